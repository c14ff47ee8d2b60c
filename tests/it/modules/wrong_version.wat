;; Built for a future ABI version 2: refused at load.
(module
  (memory (export "memory") 1)
  (func (export "gamehost_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "gamehost_abi_version") (result i32) (i32.const 2))
  (func $reply (result i64) (i64.const 0))
  (func (export "gamehost_setup") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_action") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_timeout") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_leave") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_view") (param i32 i32) (result i64) (call $reply))
)
