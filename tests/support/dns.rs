//! A DNS server for end-to-end tests: UDP on 127.0.0.1:0, answering A queries for the names
//! it is given (every address, in order, as a CDN's name with several edges answers) and
//! NXDOMAIN for any other name. The wire format is hickory's (the resolver probed uses), so
//! the daemon resolves through its real resolver, pointed here by `defaults.nameservers`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};

pub struct Dns {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Dns {
    /// Serves `names` (name, its A records) on the current runtime.
    pub async fn start(names: &[(&str, &[Ipv4Addr])]) -> Dns {
        let table: Vec<(String, Vec<Ipv4Addr>)> = names
            .iter()
            .map(|(n, ips)| (n.trim_end_matches('.').to_ascii_lowercase(), ips.to_vec()))
            .collect();
        let sock = Arc::new(
            tokio::net::UdpSocket::bind((IpAddr::from(Ipv4Addr::LOCALHOST), 0))
                .await
                .unwrap(),
        );
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                if let Some(bytes) = answer(&table, &buf[..n]) {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Dns { addr, task }
    }
}

/// The response to one query; `None` for what is not a query.
fn answer(table: &[(String, Vec<Ipv4Addr>)], query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let q = query.queries.first().cloned()?;
    let name = q
        .name()
        .to_string()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    resp.add_query(q.clone());
    match table.iter().find(|(n, _)| *n == name) {
        None => resp.metadata.response_code = ResponseCode::NXDomain,
        Some((_, ips)) if q.query_type() == RecordType::A => {
            for ip in ips {
                resp.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A(*ip))));
            }
        }
        // Known name, another type (AAAA): NOERROR, no answer.
        Some(_) => {}
    }
    resp.to_vec().ok()
}
