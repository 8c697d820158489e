//! The smallest HTTP/1.1 server the tests need: on a loopback connection, request after
//! request, each read whole (headers and a `content-length` body) and answered `200`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;

/// One request as received.
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// Serves `stream` until the client closes it: each request goes to `answer`, which
/// returns the response's content type (if any) and body.
pub fn serve(stream: TcpStream, mut answer: impl FnMut(Request) -> (Option<&'static str>, String)) {
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, path) = (words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string());
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (content_type, body) = answer(Request { method, path, headers });
        let content_type = content_type.map(|t| format!("content-type: {t}\r\n")).unwrap_or_default();
        let response = format!("HTTP/1.1 200 OK\r\n{content_type}content-length: {}\r\n\r\n{body}", body.len());
        if writer.write_all(response.as_bytes()).and_then(|()| writer.flush()).is_err() {
            return;
        }
    }
}
