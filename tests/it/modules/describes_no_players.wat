;; A module whose description of itself cannot be: a match of no players.
(module
  (memory (export "memory") 1)
  (func (export "gamehost_alloc") (param i32) (result i32) (i32.const 1024))
  (data (i32.const 2048) "{\"Ok\":{\"name\":\"zero-players\",\"players\":{\"min\":0,\"max\":2},\"modes\":[{\"name\":\"default\",\"config\":null}]}}")
  (func (export "gamehost_abi_version") (result i32) (i32.const 1))
  ;; (2048 << 32) | 101
  (func $reply (result i64) (i64.const 8796093022309))
  (func (export "gamehost_setup") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_action") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_timeout") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_leave") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_view") (param i32 i32) (result i64) (call $reply))
  (func (export "gamehost_describe") (param i32 i32) (result i64) (call $reply))
)
