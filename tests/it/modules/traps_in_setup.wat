;; Loads (right ABI, every export) but traps as soon as a match is set up: a trial match refuses it.
(module
  (memory (export "memory") 1)
  (func (export "gamehost_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gamehost_abi_version") (result i32) (i32.const 1))
  (func $trap (result i64) (unreachable))
  (func (export "gamehost_setup") (param i32 i32) (result i64) (call $trap))
  (func (export "gamehost_action") (param i32 i32) (result i64) (call $trap))
  (func (export "gamehost_timeout") (param i32 i32) (result i64) (call $trap))
  (func (export "gamehost_leave") (param i32 i32) (result i64) (call $trap))
  (func (export "gamehost_view") (param i32 i32) (result i64) (call $trap))
)
