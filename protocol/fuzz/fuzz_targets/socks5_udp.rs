//! Decodes a SOCKS5 UDP datagram header (RFC 1928 §7); a header that
//! decodes must re-encode to `encoded_len` bytes and, with the same payload,
//! decode to the same header and payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::socks5::UdpHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, offset)) = UdpHeader::decode_datagram(data) {
        let payload = data.get(offset..).expect("offset within the datagram");
        let mut out = Vec::new();
        header.encode(&mut out);
        assert_eq!(out.len(), header.encoded_len());
        assert_eq!(out.len(), offset);
        out.extend_from_slice(payload);
        assert_eq!(UdpHeader::decode_datagram(&out), Ok((header, offset)));
    }
});
