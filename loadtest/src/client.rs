//! One HTTP/1.1 keep-alive connection per worker, on hyper: the lightest
//! well-kept client, so that the load generator takes as little CPU as it can
//! from the server it shares the machine with.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{
    ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER,
};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One answer, as much of it as the load test looks at.
pub struct Answer {
    pub status: u16,
    pub retry_after: bool,
    pub body: Bytes,
}

pub struct Connection {
    address: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            host: HeaderValue::from_str(&address.to_string()).expect("an address is a valid host"),
            sender: None,
        }
    }

    async fn sender(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        let alive = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            let stream = TcpStream::connect(self.address)
                .await
                .with_context(|| format!("connecting to {}", self.address))?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // The server may close the connection; the next request reconnects.
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected above"))
    }

    /// `GET` with `Accept: application/json` (the roster).
    pub async fn send_accepting_json(
        &mut self,
        path: &str,
        bearer: &str,
    ) -> anyhow::Result<Answer> {
        let bearer = bearer_header(bearer);
        self.send_with(
            Method::GET,
            path,
            Some(&bearer),
            None,
            Some("application/json"),
            None,
        )
        .await
    }

    /// Sends one request; reconnects first if the server closed the connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Answer> {
        let bearer = bearer.map(bearer_header);
        self.send_with(
            method,
            path,
            bearer.as_ref(),
            body.map(Bytes::from),
            None,
            None,
        )
        .await
    }

    /// Sends with a ready `Authorization` value and body (no per-request building).
    pub async fn send_prepared(
        &mut self,
        method: Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        self.send_with(method, path, authorization, body, None, None)
            .await
    }

    /// As `send_prepared`, asking for a compressed answer when
    /// `accept_encoding` is given (the body is then counted as sent).
    pub async fn send_encoded(
        &mut self,
        method: Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Bytes>,
        accept_encoding: Option<&HeaderValue>,
    ) -> anyhow::Result<Answer> {
        self.send_with(method, path, authorization, body, None, accept_encoding)
            .await
    }

    async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Bytes>,
        accept: Option<&'static str>,
        accept_encoding: Option<&HeaderValue>,
    ) -> anyhow::Result<Answer> {
        let host = self.host.clone();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(encoding) = accept_encoding {
            request = request.header(ACCEPT_ENCODING, encoding.clone());
        }
        let body = match body {
            Some(bytes) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body)?;
        let sender = self.sender().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(error) => {
                self.sender = None;
                return Err(error.into());
            }
        };
        let status = response.status().as_u16();
        let retry_after = response.headers().contains_key(RETRY_AFTER);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// `Authorization: Bearer <token>`, built once.
pub fn bearer_header(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("tokens are visible ASCII")
}
