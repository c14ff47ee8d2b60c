;; Uses the tail-call proposal, which Cranelift compiles and Winch does not: a quick load falls
;; back to optimised code. Answers every call with bytes that are not a reply.
(module
  (memory (export "memory") 1)
  (func (export "gamehost_alloc") (param i32) (result i32) (i32.const 1024))
  (data (i32.const 16) "this is not json")
  (func (export "gamehost_abi_version") (result i32) (i32.const 1))
  ;; (16 << 32) | 16
  (func $reply (result i64) (i64.const 68719476752))
  (func $tail (result i64) (return_call $reply))
  (func (export "gamehost_setup") (param i32 i32) (result i64) (call $tail))
  (func (export "gamehost_action") (param i32 i32) (result i64) (call $tail))
  (func (export "gamehost_timeout") (param i32 i32) (result i64) (call $tail))
  (func (export "gamehost_leave") (param i32 i32) (result i64) (call $tail))
  (func (export "gamehost_view") (param i32 i32) (result i64) (call $tail))
)
