;; The responder the puppet's `request` calls can reach: subscribed to `echo.*`, it answers
;; every Request with the same message turned into a Response (even id) or an Error (odd id).
(module
  (import "env" "subscribe_topic" (func $subscribe_topic (param i32 i32 i32) (result i32)))
  (import "env" "publish_message" (func $publish_message (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 0) "echo.*")
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i64) (local $size i64)
    (local.set $ptr (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $len))))
    (local.set $size (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $size))
      (then (drop (memory.grow (i32.wrap_i64
        (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $size)) (i64.const 65535))
                   (i64.const 16)))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))
  (func (export "init")
    (drop (call $subscribe_topic (i32.const 0) (i32.const 6) (i32.const 0))))
  ;; The kind sits right after the topic (u64 length + bytes); the id right after the kind.
  (func (export "on_message") (param $ptr i32) (param $len i32)
    (local $kind_at i32)
    (local.set $kind_at
      (i32.add (i32.add (local.get $ptr) (i32.const 8)) (i32.wrap_i64 (i64.load (local.get $ptr)))))
    (if (i32.eq (i32.load (local.get $kind_at)) (i32.const 1))
      (then
        (i32.store (local.get $kind_at)
          (i32.add (i32.const 2) (i32.and (i32.load offset=4 (local.get $kind_at)) (i32.const 1))))
        (drop (call $publish_message (local.get $ptr) (local.get $len)))))
    (global.set $heap (i32.const 1024)))
)
