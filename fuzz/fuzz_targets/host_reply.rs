//! The host's decoding of module replies, as `host::runtime::decode_reply` does it (a JSON
//! `Reply` of the ABI's types): any bytes are a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

type Raw = Box<RawValue>;

fuzz_target!(|reply: &[u8]| {
    let _ = serde_json::from_slice::<abi::Reply<abi::Transition<Raw, Raw, Raw>>>(reply);
    let _ = serde_json::from_slice::<abi::Reply<Raw>>(reply);
    let _ = serde_json::from_slice::<abi::Reply<Option<Raw>>>(reply);
    let _ = serde_json::from_slice::<abi::Reply<abi::Description<Raw>>>(reply);
});
