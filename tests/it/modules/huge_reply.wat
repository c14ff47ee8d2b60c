;; Loads fine, then claims a reply of 2 GiB.
(module
  (memory (export "memory") 1)
  (func (export "gamehost_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gamehost_abi_version") (result i32) (i32.const 1))
  (func $reply (result i64) (i64.const 0x7fffffff))
  (func (export "gamehost_setup") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_action") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_timeout") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_leave") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_view") (param i32 i32) (result i64) (call $reply))
)
