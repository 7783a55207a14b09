//! SOCKS6 UDP association messages: decode from the stream and as a
//! datagram; a complete message re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sixpath_protocol::Decoded;
use sixpath_protocol::socks6::udp::{Error, UdpMessage};

fuzz_target!(|data: &[u8]| {
    let stream = UdpMessage::decode(data);
    let datagram = UdpMessage::decode_datagram(data);
    match &stream {
        Ok(Decoded::Complete { msg, len }) => {
            assert!(*len <= data.len());
            assert_eq!(datagram.as_ref(), Ok(msg));
            let mut buf = Vec::new();
            msg.encode(&mut buf).expect("a decoded message fits");
            assert_eq!(buf.len(), msg.encoded_len());
            assert_eq!(
                UdpMessage::decode(&buf),
                Ok(Decoded::Complete {
                    msg: msg.clone(),
                    len: buf.len()
                })
            );
        }
        Ok(Decoded::NeedMore(n)) => {
            assert!(*n >= 1);
            assert_eq!(datagram, Err(Error::LengthExceedsDatagram));
        }
        Err(e) => assert_eq!(datagram.as_ref(), Err(e)),
    }
});
