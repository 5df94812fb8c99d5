//! A DNS server for tests, answering from a table ([`Zone`]): a name's records of the asked
//! type, NXDOMAIN for names it does not know, or a set rcode, a late answer, no answer.
//! The wire format is hickory's, the resolver `probed` uses; point the daemon at it with
//! `defaults.nameservers` (e.g. a CDN name with several edges on 127.0.0.1-.3).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::{RData, Record};

/// What the test DNS server knows: names (case-insensitive, without the final dot) and how
/// each is answered. A name not in the table is NXDOMAIN; a name in it answers NOERROR with
/// its records of the asked type (none: an empty answer), unless it has an rcode or is
/// silent.
#[derive(Clone, Default)]
pub struct Zone {
    names: Vec<(String, Entry)>,
}

#[derive(Clone, Default)]
struct Entry {
    records: Vec<RData>,
    rcode: Option<ResponseCode>,
    /// Never answered.
    silent: bool,
    /// Answered after this long (the behaviour under test, not a sync).
    delay: Duration,
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let i = match self.names.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.names.push((name, Entry::default()));
                self.names.len() - 1
            }
        };
        &mut self.names[i].1
    }

    /// An A or AAAA record for each of `ips`, in order.
    pub fn addrs(mut self, name: &str, ips: &[IpAddr]) -> Zone {
        use hickory_resolver::proto::rr::rdata::{A, AAAA};
        let e = self.entry(name);
        e.records.extend(ips.iter().map(|ip| match ip {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        }));
        self
    }

    /// An A record for each of `ips`, in order.
    pub fn a(self, name: &str, ips: &[Ipv4Addr]) -> Zone {
        let ips: Vec<IpAddr> = ips.iter().copied().map(IpAddr::V4).collect();
        self.addrs(name, &ips)
    }

    /// Any record.
    pub fn record(mut self, name: &str, data: RData) -> Zone {
        self.entry(name).records.push(data);
        self
    }

    /// A name with no record of any type (NOERROR, no answer).
    pub fn empty(mut self, name: &str) -> Zone {
        self.entry(name);
        self
    }

    /// A name answered with `rcode` and no records.
    pub fn rcode(mut self, name: &str, rcode: ResponseCode) -> Zone {
        self.entry(name).rcode = Some(rcode);
        self
    }

    /// A name never answered.
    pub fn silent(mut self, name: &str) -> Zone {
        self.entry(name).silent = true;
        self
    }

    /// A name answered `delay` late.
    pub fn delay(mut self, name: &str, delay: Duration) -> Zone {
        self.entry(name).delay = delay;
        self
    }

    /// Serves the table on UDP 127.0.0.1:0.
    pub async fn serve(self) -> SocketAddr {
        let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
                let Some((bytes, delay)) = self.answer(&buf[..n]) else {
                    continue;
                };
                let sock = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sock.send_to(&bytes, peer).await;
                });
            }
        });
        addr
    }

    /// The response to one query, and when to send it; `None`: no answer.
    fn answer(&self, query: &[u8]) -> Option<(Vec<u8>, Duration)> {
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
        let mut delay = Duration::ZERO;
        match self.names.iter().find(|(n, _)| *n == name) {
            None => resp.metadata.response_code = ResponseCode::NXDomain,
            Some((_, e)) if e.silent => return None,
            Some((_, e)) => {
                delay = e.delay;
                match e.rcode {
                    Some(code) => resp.metadata.response_code = code,
                    None => {
                        for data in e
                            .records
                            .iter()
                            .filter(|d| d.record_type() == q.query_type())
                        {
                            resp.add_answer(Record::from_rdata(q.name().clone(), 60, data.clone()));
                        }
                    }
                }
            }
        }
        Some((resp.to_vec().unwrap(), delay))
    }
}
