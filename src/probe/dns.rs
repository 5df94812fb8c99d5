//! `kind: dns`: one DNS query (`query_name` and `type`) to the system's resolver or to given
//! nameservers, judged on the response code, the answers and the time it took. Phase
//! `resolve`.
//!
//! With `nameservers`, each check builds its own resolver for them (no cache, one attempt),
//! so it measures those servers as a new client would; without, it uses the daemon's
//! resolver (`/etc/resolv.conf`, also uncached). The name is absolute: no search domain is
//! ever appended to it. (hickory answers `localhost` itself, RFC 6761: probing it tests
//! nothing.)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RecordType};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::time::Instant;

use super::{CheckCx, Observation, until};
use crate::text::FieldError;
use crate::text::{short, tidy};
use crate::units::{Dur, format_duration};

/// Settings of a `dns` probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The name to look up, e.g. `www.example.com` (always absolute: no search domains).
    /// Called `query_name`, as in blackbox_exporter, because `name` names the probe.
    pub query_name: String,
    /// Record type: `A` (default), `AAAA`, `CNAME`, `MX`, `TXT`, `NS`, `SOA`, `SRV` or `CAA`
    /// (`query_type` is accepted too, as blackbox_exporter spells it).
    #[serde(rename = "type", alias = "query_type", default)]
    pub record_type: QueryType,
    /// Nameservers to ask, as `ip` or `ip:port` (`[v6]:port`); port 53 by default. Several
    /// are tried as one pool. Default: the system's resolver.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// What a good answer looks like. Default: rcode NOERROR with at least one answer.
    #[serde(default)]
    pub expect: Expect,
    /// Fail when the query takes this long or longer.
    pub latency_under: Option<Dur>,
}

/// Expectations; every one given must hold.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DnsExpect")]
pub struct Expect {
    /// Response code: `NOERROR` (default) or `NXDOMAIN` (to assert that a name is absent).
    #[serde(default)]
    pub rcode: Rcode,
    /// Values that must all be among the answers of the asked type, as text in zone-file
    /// form: an address (`10.0.0.1`, `2001:db8::1`), a name (`web.example.com`), an MX
    /// (`10 mail.example.com`), a TXT string. Addresses compare as addresses, names ignore
    /// case and the final dot.
    #[serde(default)]
    pub contains: Vec<String>,
    /// Fewest answers of the asked type. Default: 1 with rcode NOERROR (write 0 to accept
    /// an empty answer).
    pub min_answers: Option<usize>,
    /// Most answers of the asked type.
    pub max_answers: Option<usize>,
}

/// The record types a probe may ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QueryType {
    #[default]
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Soa,
    Srv,
    Caa,
}

const QUERY_TYPES: &[(&str, QueryType)] = &[
    ("A", QueryType::A),
    ("AAAA", QueryType::Aaaa),
    ("CNAME", QueryType::Cname),
    ("MX", QueryType::Mx),
    ("TXT", QueryType::Txt),
    ("NS", QueryType::Ns),
    ("SOA", QueryType::Soa),
    ("SRV", QueryType::Srv),
    ("CAA", QueryType::Caa),
];

impl QueryType {
    fn record_type(self) -> RecordType {
        match self {
            QueryType::A => RecordType::A,
            QueryType::Aaaa => RecordType::AAAA,
            QueryType::Cname => RecordType::CNAME,
            QueryType::Mx => RecordType::MX,
            QueryType::Txt => RecordType::TXT,
            QueryType::Ns => RecordType::NS,
            QueryType::Soa => RecordType::SOA,
            QueryType::Srv => RecordType::SRV,
            QueryType::Caa => RecordType::CAA,
        }
    }
}

impl schemars::JsonSchema for QueryType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DnsRecordType".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A record type (any case).",
            "patternErrorMessage": format!(
                "not a record type: one of {}",
                QUERY_TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
            "type": "string",
            "examples": QUERY_TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            "pattern": format!(
                r"^\s*({})\s*${}",
                QUERY_TYPES
                    .iter()
                    .map(|(n, _)| crate::units::any_case(n))
                    .collect::<Vec<_>>()
                    .join("|"),
                crate::units::INTERP_ALT
            ),
        })
    }
}

impl<'de> Deserialize<'de> for QueryType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        QUERY_TYPES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = QUERY_TYPES.iter().map(|(n, _)| *n).collect();
                serde::de::Error::custom(format!(
                    "unknown record type {s:?} (use one of {})",
                    names.join(", ")
                ))
            })
    }
}

/// The response codes a probe may expect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rcode {
    #[default]
    NoError,
    NxDomain,
}

impl Rcode {
    fn code(self) -> ResponseCode {
        match self {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
        }
    }
}

impl schemars::JsonSchema for Rcode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DnsRcode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A response code: NOERROR or NXDOMAIN (any case).",
            "type": "string",
            "examples": ["NOERROR", "NXDOMAIN"],
            "patternErrorMessage": "not an rcode: NOERROR or NXDOMAIN",
            "pattern": format!(r"^\s*({}|{})\s*${}", crate::units::any_case("NOERROR"), crate::units::any_case("NXDOMAIN"), crate::units::INTERP_ALT),
        })
    }
}

impl<'de> Deserialize<'de> for Rcode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.trim().to_ascii_uppercase().as_str() {
            "NOERROR" => Ok(Rcode::NoError),
            "NXDOMAIN" => Ok(Rcode::NxDomain),
            _ => Err(serde::de::Error::custom(format!(
                "unknown rcode {s:?} (use NOERROR or NXDOMAIN)"
            ))),
        }
    }
}

/// Most answers listed in a reason.
const LISTED: usize = 10;

impl Spec {
    /// Every problem, without I/O.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(e) = parse_name(&self.query_name) {
            errs.push(FieldError::new("query_name", e));
        }
        for (i, ns) in self.nameservers.iter().enumerate() {
            if let Err(e) = parse_nameserver(ns) {
                errs.push(FieldError::new(format!("nameservers[{i}]"), e));
            }
        }
        let expect = &self.expect;
        if expect.rcode == Rcode::NxDomain {
            let answers = [
                ("contains", !expect.contains.is_empty()),
                ("min_answers", expect.min_answers.is_some_and(|n| n > 0)),
            ];
            for (field, _) in answers.iter().filter(|(_, given)| *given) {
                errs.push(FieldError::new(
                    format!("expect.{field}"),
                    "an NXDOMAIN answer has no records: expect answers with rcode NOERROR",
                ));
            }
        }
        let qtype = self.record_type;
        for (i, want) in expect.contains.iter().enumerate() {
            let path = format!("expect.contains[{i}]");
            if want.trim().is_empty() {
                errs.push(FieldError::new(path, "empty value"));
                continue;
            }
            let bad_ip = match qtype {
                QueryType::A => want.trim().parse::<std::net::Ipv4Addr>().is_err(),
                QueryType::Aaaa => want.trim().parse::<std::net::Ipv6Addr>().is_err(),
                _ => false,
            };
            if bad_ip {
                let family = if qtype == QueryType::A {
                    "ipv4"
                } else {
                    "ipv6"
                };
                errs.push(FieldError::new(
                    path,
                    format!("{want:?} is not an {family} address, as {qtype:?} answers are"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (expect.min_answers, expect.max_answers)
            && min > max
        {
            errs.push(FieldError::new(
                "expect.max_answers",
                format!("max_answers {max} is below min_answers {min}"),
            ));
        }
        if let Some(max) = expect.max_answers
            && expect.contains.len() > max
        {
            errs.push(FieldError::new(
                "expect.max_answers",
                format!(
                    "max_answers {max} is below the {} values of contains",
                    expect.contains.len()
                ),
            ));
        }
        if self.latency_under.is_some_and(|d| d.0.is_zero()) {
            errs.push(FieldError::new("latency_under", "must be more than 0"));
        }
        errs
    }

    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// The first nameserver's address, for the per-host concurrency cap; none for the
    /// system resolver.
    pub fn target_host(&self) -> Option<String> {
        let ns = parse_nameserver(self.nameservers.first()?).ok()?;
        Some(ns.ip().to_string())
    }

    /// The first nameserver asked (`ip:port`), as blackbox_exporter's dns target; the name
    /// queried when the system's resolver answers.
    pub fn instance(&self) -> Option<String> {
        match self.nameservers.first() {
            Some(ns) => parse_nameserver(ns).ok().map(|a| a.to_string()),
            None => Some(self.query_name.clone()),
        }
    }

    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let name = parse_name(&self.query_name).map_err(|e| format!("query_name: {e}"))?;
        let nameservers = self
            .nameservers
            .iter()
            .map(|ns| parse_nameserver(ns))
            .collect::<Result<Vec<_>, _>>()?;
        let qtype = self.record_type.record_type();
        let min_answers = self
            .expect
            .min_answers
            .unwrap_or(usize::from(self.expect.rcode == Rcode::NoError));
        Ok(Check {
            question: format!("{qtype} {}", self.query_name.trim().trim_end_matches('.')),
            name,
            qtype,
            nameservers,
            rcode: self.expect.rcode.code(),
            contains: self.expect.contains.clone(),
            min_answers,
            max_answers: self.expect.max_answers,
            latency_under: self.latency_under.map(|d| d.0),
        })
    }
}

/// The name as an absolute DNS name (IDNs to punycode).
fn parse_name(name: &str) -> Result<Name, String> {
    let n = name.trim();
    if n.is_empty() {
        return Err("query_name is empty".into());
    }
    if n.contains(|c: char| c.is_whitespace() || "/:@".contains(c)) {
        return Err(format!(
            "invalid name {n:?} (write a domain name such as www.example.com)"
        ));
    }
    let mut parsed =
        Name::from_utf8(n).map_err(|e| format!("invalid name {n:?}: {}", tidy(&e.to_string())))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// `ip`, `ip:port` or `[v6]:port`; port 53 unless given.
fn parse_nameserver(ns: &str) -> Result<SocketAddr, String> {
    let t = ns.trim();
    let addr = match t.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match t
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(t)
            .parse::<IpAddr>()
        {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => {
                return Err(format!(
                    "invalid nameserver {t:?} (write an ip address, ip:port or [ipv6]:port)"
                ));
            }
        },
    };
    if addr.port() == 0 {
        return Err(format!("invalid nameserver {t:?}: port 0"));
    }
    Ok(addr)
}

/// A runnable `dns` probe.
pub struct Check {
    /// `A web.example`, for reasons.
    question: String,
    name: Name,
    qtype: RecordType,
    nameservers: Vec<SocketAddr>,
    rcode: ResponseCode,
    contains: Vec<String>,
    min_answers: usize,
    max_answers: Option<usize>,
    latency_under: Option<Duration>,
}

impl Check {
    /// One query, judged: rcode, contains, answer counts, latency.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let answered = self.query(cx, started, &mut obs).await;
        obs.phase("resolve", started.elapsed());
        obs.ip = self.nameservers.first().map(SocketAddr::ip);
        obs.duration = started.elapsed();
        // `size` stays empty: it means bytes, and the answers are counted in the reasons.
        let verdict =
            answered.and_then(|(rcode, answers)| self.verdict(rcode, &answers, obs.duration));
        match verdict {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(reason),
        }
    }

    /// The response code and the answers of the asked type, as text.
    /// Records the answer's size (and a SOA's serial) in `obs.dns`.
    async fn query(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
    ) -> Result<(ResponseCode, Vec<String>), String> {
        let own;
        let (resolver, via) = if self.nameservers.is_empty() {
            (&cx.env.resolver, "the system resolver".to_string())
        } else {
            let remaining = cx.deadline.saturating_duration_since(Instant::now());
            own = self.resolver(remaining)?;
            let list: Vec<String> = self.nameservers.iter().map(ToString::to_string).collect();
            (&own, list.join(", "))
        };
        let lookup = until(
            cx,
            started,
            &format!("resolving {} with {via}", self.question),
            resolver.lookup(self.name.clone(), self.qtype),
        )
        .await?;
        match lookup {
            Ok(lookup) => {
                obs.dns = Some(crate::probe::DnsSeen {
                    answer: lookup.answers().len() as u32,
                    serial: lookup.answers().iter().find_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::SOA(soa) => Some(soa.serial),
                        _ => None,
                    }),
                    ..Default::default()
                });
                let answers = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == self.qtype)
                    .map(|r| r.data.to_string())
                    .collect();
                Ok((ResponseCode::NoError, answers))
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. }))) => {
                obs.dns = Some(crate::probe::DnsSeen::default());
                Ok((response_code, Vec::new()))
            }
            Err(NetError::Dns(DnsError::ResponseCode(code))) => Ok((code, Vec::new())),
            Err(NetError::Timeout) => Err(format!(
                "dns: {}: no answer from {via} (request timed out)",
                self.question
            )),
            Err(e) => Err(format!(
                "dns: {}: lookup with {via} failed: {}",
                self.question,
                tidy(&e.to_string())
            )),
        }
    }

    /// A resolver for this probe's nameservers: no cache, one attempt, no hosts file, and a
    /// timeout past the check's deadline (the deadline speaks first, naming the phase).
    fn resolver(&self, remaining: Duration) -> Result<hickory_resolver::TokioResolver, String> {
        use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let mut cfg = ResolverConfig::default();
        for ns in &self.nameservers {
            let mut server = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut server.connections {
                c.port = ns.port();
            }
            cfg.add_name_server(server);
        }
        let mut builder = hickory_resolver::TokioResolver::builder_with_config(
            cfg,
            TokioRuntimeProvider::default(),
        );
        let opts = builder.options_mut();
        opts.attempts = 1;
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = remaining + Duration::from_secs(1);
        builder
            .build()
            .map_err(|e| format!("dns: cannot build a resolver: {}", tidy(&e.to_string())))
    }

    fn verdict(
        &self,
        rcode: ResponseCode,
        answers: &[String],
        took: Duration,
    ) -> Result<(), String> {
        let q = &self.question;
        if rcode != self.rcode {
            return Err(format!(
                "dns: {q}: rcode {}, expected {}",
                rcode_name(rcode),
                rcode_name(self.rcode)
            ));
        }
        let have: Vec<String> = answers.iter().map(|a| normalize(self.qtype, a)).collect();
        for want in &self.contains {
            if !have.contains(&normalize(self.qtype, want)) {
                return Err(format!(
                    "dns: {q}: expected {} among {}",
                    short(want.trim()),
                    listed(answers)
                ));
            }
        }
        let n = answers.len();
        let count = |n: usize| format!("{n} answer{}", if n == 1 { "" } else { "s" });
        if n < self.min_answers {
            return Err(format!(
                "dns: {q}: {} {}, expected at least {}",
                count(n),
                listed(answers),
                self.min_answers
            ));
        }
        if let Some(max) = self.max_answers
            && n > max
        {
            return Err(format!(
                "dns: {q}: {} {}, expected at most {max}",
                count(n),
                listed(answers)
            ));
        }
        if let Some(limit) = self.latency_under
            && took >= limit
        {
            return Err(format!(
                "dns: {q}: took {}, expected under {}",
                format_duration(Duration::from_millis(took.as_millis() as u64)),
                format_duration(limit)
            ));
        }
        Ok(())
    }
}

/// An answer as compared: addresses in canonical form; TXT and CAA as they are; names
/// lower-case, without final dots.
fn normalize(qtype: RecordType, value: &str) -> String {
    let v = value.trim();
    match qtype {
        RecordType::A | RecordType::AAAA => v
            .parse::<IpAddr>()
            .map_or_else(|_| v.to_string(), |ip| ip.to_string()),
        RecordType::TXT | RecordType::CAA => v.to_string(),
        _ => v
            .split_whitespace()
            .map(|w| w.trim_end_matches('.').to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `[10.0.0.1, 10.0.0.2]`, at most [`LISTED`] of them.
fn listed(answers: &[String]) -> String {
    let mut shown: Vec<String> = answers.iter().take(LISTED).map(|a| short(a)).collect();
    if answers.len() > LISTED {
        shown.push(format!("… {} more", answers.len() - LISTED));
    }
    format!("[{}]", shown.join(", "))
}

/// The mnemonic of a response code, as dig prints it.
fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::probe::Env;
    use crate::probe::testkit::{
        Zone, assert_by_deadline, assert_field_errors, env, reason, run_in,
    };

    /// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
    fn spec(yaml: &str) -> Spec {
        crate::probe::testkit::spec(yaml)
    }

    /// A small DNS server on UDP 127.0.0.1:0:
    /// - `web.test`: A 10.0.0.1 and 10.0.0.2, AAAA 2001:db8::1;
    /// - `mail.test`: MX 10 mx1.mail.test. and 20 mx2.mail.test., TXT "v=spf1 -all";
    /// - `empty.test`: no record of any type (NOERROR, no answer);
    /// - `servfail.test`: SERVFAIL; `refused.test`: REFUSED;
    /// - `slow.test`: A 10.0.0.9, answered after 300 ms (the behaviour under test);
    /// - `blackhole.test`: never answered;
    /// - anything else: NXDOMAIN.
    async fn dns_server() -> SocketAddr {
        use hickory_resolver::proto::rr::RData;
        use hickory_resolver::proto::rr::rdata::{MX, TXT};
        let mx = |pref: u16, host: &str| RData::MX(MX::new(pref, Name::from_ascii(host).unwrap()));
        Zone::new()
            .addrs(
                "web.test",
                &[
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
                ],
            )
            .record("mail.test", mx(10, "mx1.mail.test."))
            .record("mail.test", mx(20, "mx2.mail.test."))
            .record(
                "mail.test",
                RData::TXT(TXT::new(vec!["v=spf1 -all".into()])),
            )
            .empty("empty.test")
            .rcode("servfail.test", ResponseCode::ServFail)
            .rcode("refused.test", ResponseCode::Refused)
            .a("slow.test", &[Ipv4Addr::new(10, 0, 0, 9)])
            .delay("slow.test", Duration::from_millis(300))
            .silent("blackhole.test")
            .serve()
            .await
    }

    #[test]
    fn validate_reports_every_problem_with_its_path() {
        let good = spec(
            "query_name: www.example.com.\ntype: aaaa\nnameservers: ['10.0.0.53', '10.0.0.54:5353', \
             '[2001:db8::53]:53', '2001:db8::54']\n\
             expect: { contains: ['2001:db8::1'], min_answers: 1, max_answers: 4 }\n\
             latency_under: 200ms",
        );
        assert_eq!(good.validate(), vec![]);
        assert_eq!(good.record_type, QueryType::Aaaa);
        assert_eq!(good.target_host().as_deref(), Some("10.0.0.53"));
        let check = good.build().unwrap();
        assert_eq!(check.question, "AAAA www.example.com");
        assert_eq!(
            check
                .nameservers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "10.0.0.53:53",
                "10.0.0.54:5353",
                "[2001:db8::53]:53",
                "[2001:db8::54]:53"
            ]
        );
        assert_eq!(
            spec("query_name: x.example\nquery_type: mx").record_type,
            QueryType::Mx
        );
        let defaults = spec("query_name: example.com");
        assert_eq!(defaults.validate(), vec![]);
        assert_eq!(defaults.record_type, QueryType::A);
        assert_eq!(defaults.expect.rcode, Rcode::NoError);
        assert_eq!(defaults.target_host(), None);
        assert_eq!(defaults.build().unwrap().min_answers, 1);
        let absent = spec("query_name: old.example.com\nexpect: { rcode: nxdomain }");
        assert_eq!(absent.validate(), vec![]);
        assert_eq!(absent.build().unwrap().min_answers, 0);

        let cases: &[(&str, &[(&str, &str)])] = &[
            ("query_name: ''", &[("query_name", "query_name is empty")]),
            (
                "query_name: 'http://x.example'",
                &[("query_name", "invalid name")],
            ),
            ("query_name: 'a..b'", &[("query_name", "invalid name")]),
            (
                "query_name: x.example\nnameservers: ['dns.example', '10.0.0.1:0']",
                &[
                    ("nameservers[0]", "invalid nameserver \"dns.example\""),
                    ("nameservers[1]", "port 0"),
                ],
            ),
            (
                "query_name: x.example\nexpect: { rcode: NXDOMAIN, contains: [10.0.0.1], min_answers: 1 }",
                &[
                    ("expect.contains", "an NXDOMAIN answer has no records"),
                    ("expect.min_answers", "an NXDOMAIN answer has no records"),
                ],
            ),
            (
                "query_name: x.example\nexpect: { contains: ['2001:db8::1', ''] }",
                &[
                    ("expect.contains[0]", "is not an ipv4 address"),
                    ("expect.contains[1]", "empty value"),
                ],
            ),
            (
                "query_name: x.example\ntype: AAAA\nexpect: { contains: [10.0.0.1] }",
                &[("expect.contains[0]", "is not an ipv6 address")],
            ),
            (
                "query_name: x.example\nexpect: { min_answers: 3, max_answers: 2 }",
                &[("expect.max_answers", "below min_answers 3")],
            ),
            (
                "query_name: x.example\nexpect: { contains: [10.0.0.1, 10.0.0.2], max_answers: 1 }",
                &[("expect.max_answers", "below the 2 values of contains")],
            ),
            (
                "query_name: x.example\nlatency_under: 0s",
                &[("latency_under", "more than 0")],
            ),
        ];
        for (yaml, want) in cases {
            assert_field_errors(yaml, &spec(yaml).validate(), want);
        }
        for (yaml, msg) in [
            ("query_name: x\ntype: PTR", "unknown record type \"PTR\""),
            (
                "query_name: x\nexpect: { rcode: SERVFAIL }",
                "unknown rcode",
            ),
            ("query_name: x\nbogus: 1", "unknown field"),
            ("name: x", "unknown field `name`"),
            ("type: A", "missing field `query_name`"),
        ] {
            let e = serde_yaml::from_str::<Spec>(yaml).unwrap_err().to_string();
            assert!(e.contains(msg), "{yaml}: {e}");
        }
    }

    #[tokio::test]
    async fn answers_rcodes_and_counts_are_judged() {
        let dns = dns_server().await;
        let env = env();
        let ns = format!("nameservers: ['{dns}']");
        // (spec, reason or None for up, answers of the asked type)
        let cases: &[(&str, Option<&str>, u64)] = &[
            ("query_name: web.test", None, 2),
            (
                "query_name: web.test\nexpect: { contains: [10.0.0.1, 10.0.0.2] }",
                None,
                2,
            ),
            (
                "query_name: web.test\nexpect: { contains: [10.0.0.1, 10.0.0.3] }",
                Some("dns: A web.test: expected 10.0.0.3 among [10.0.0.1, 10.0.0.2]"),
                2,
            ),
            (
                "query_name: web.test\nexpect: { min_answers: 2, max_answers: 2 }",
                None,
                2,
            ),
            (
                "query_name: web.test\nexpect: { max_answers: 1 }",
                Some("dns: A web.test: 2 answers [10.0.0.1, 10.0.0.2], expected at most 1"),
                2,
            ),
            (
                "query_name: web.test\nexpect: { min_answers: 3 }",
                Some("dns: A web.test: 2 answers [10.0.0.1, 10.0.0.2], expected at least 3"),
                2,
            ),
            (
                "query_name: WEB.test.\ntype: AAAA\nexpect: { contains: ['2001:0db8::1'] }",
                None,
                1,
            ),
            (
                "query_name: web.test\ntype: AAAA\nexpect: { contains: ['2001:db8::2'] }",
                Some("dns: AAAA web.test: expected 2001:db8::2 among [2001:db8::1]"),
                1,
            ),
            (
                "query_name: mail.test\ntype: MX\nexpect: { contains: ['10 mx1.mail.test', '20 MX2.mail.test.'] }",
                None,
                2,
            ),
            (
                "query_name: mail.test\ntype: MX\nexpect: { contains: ['30 mx3.mail.test.'] }",
                Some(
                    "dns: MX mail.test: expected 30 mx3.mail.test. among \
                     [10 mx1.mail.test., 20 mx2.mail.test.]",
                ),
                2,
            ),
            (
                "query_name: mail.test\ntype: TXT\nexpect: { contains: ['v=spf1 -all'] }",
                None,
                1,
            ),
            (
                "query_name: mail.test\ntype: txt\nexpect: { contains: ['v=spf1 +all'] }",
                Some("dns: TXT mail.test: expected v=spf1 +all among [v=spf1 -all]"),
                1,
            ),
            (
                "query_name: nosuch.test",
                Some("dns: A nosuch.test: rcode NXDOMAIN, expected NOERROR"),
                0,
            ),
            (
                "query_name: nosuch.test\nexpect: { rcode: NXDOMAIN }",
                None,
                0,
            ),
            (
                "query_name: web.test\nexpect: { rcode: NXDOMAIN }",
                Some("dns: A web.test: rcode NOERROR, expected NXDOMAIN"),
                2,
            ),
            (
                "query_name: empty.test",
                Some("dns: A empty.test: 0 answers [], expected at least 1"),
                0,
            ),
            (
                "query_name: empty.test\nexpect: { min_answers: 0 }",
                None,
                0,
            ),
            (
                "query_name: mail.test\nexpect: { contains: [10.0.0.1] }",
                Some("dns: A mail.test: expected 10.0.0.1 among []"),
                0,
            ),
            (
                "query_name: servfail.test",
                Some("dns: A servfail.test: rcode SERVFAIL, expected NOERROR"),
                0,
            ),
            (
                "query_name: refused.test",
                Some("dns: A refused.test: rcode REFUSED, expected NOERROR"),
                0,
            ),
            ("query_name: slow.test\nlatency_under: 5s", None, 1),
        ];
        for (yaml, want, answers) in cases {
            let obs = run_in(
                &spec(&format!("{yaml}\n{ns}")),
                &env,
                Duration::from_secs(5),
            )
            .await;
            match want {
                None => assert!(obs.ok, "{yaml}: {:?}", obs.error),
                Some(w) => assert_eq!(reason(&obs), *w, "{yaml}"),
            }
            assert_eq!(obs.size, None, "{yaml}");
            // The answers of the asked type, as the verdict saw them.
            let check = spec(&format!("{yaml}\n{ns}")).build().unwrap();
            let cx = CheckCx {
                env: &env,
                deadline: Instant::now() + Duration::from_secs(5),
            };
            let (_, seen) = check
                .query(&cx, Instant::now(), &mut Observation::default())
                .await
                .unwrap();
            assert_eq!(seen.len() as u64, *answers, "{yaml}: {seen:?}");
            assert_eq!(obs.phases.len(), 1);
            assert_eq!(obs.phases[0].0, "resolve");
            assert_eq!(obs.ip, Some(dns.ip()));
        }

        let obs = run_in(
            &spec(&format!(
                "query_name: slow.test\nlatency_under: 100ms\n{ns}"
            )),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert!(
            reason(&obs).starts_with("dns: A slow.test: took ")
                && reason(&obs).ends_with(", expected under 100ms"),
            "{}",
            reason(&obs)
        );
    }

    #[tokio::test]
    async fn a_nameserver_that_never_answers_is_down_at_the_deadline() {
        let dns = dns_server().await;
        let env = env();
        let within = Duration::from_millis(400);
        let t = Instant::now();
        let obs = run_in(
            &spec(&format!(
                "query_name: blackhole.test\nnameservers: ['{dns}']"
            )),
            &env,
            within,
        )
        .await;
        assert_by_deadline(t.elapsed(), within);
        assert!(
            reason(&obs).starts_with("timed out after ")
                && reason(&obs).ends_with(&format!("while resolving A blackhole.test with {dns}")),
            "{}",
            reason(&obs)
        );
        assert_eq!(obs.size, None);
    }

    #[tokio::test]
    async fn without_nameservers_the_env_resolver_answers() {
        let dns = dns_server().await;
        let env = Env::new(&[dns]).unwrap();
        let obs = run_in(
            &spec("query_name: web.test\nexpect: { contains: [10.0.0.2] }"),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.ip, None);
        let obs = run_in(
            &spec("query_name: servfail.test"),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            reason(&obs),
            "dns: A servfail.test: rcode SERVFAIL, expected NOERROR"
        );
    }

    #[test]
    fn answers_compare_as_text_of_their_kind() {
        assert_eq!(
            normalize(RecordType::AAAA, "2001:0DB8::0001"),
            "2001:db8::1"
        );
        assert_eq!(
            normalize(RecordType::MX, "10 Mail.Example.COM."),
            "10 mail.example.com"
        );
        assert_eq!(normalize(RecordType::TXT, " Hello World "), "Hello World");
        let many: Vec<String> = (0..12).map(|i| format!("10.0.0.{i}")).collect();
        assert!(
            listed(&many).ends_with("10.0.0.9, … 2 more]"),
            "{}",
            listed(&many)
        );
        assert_eq!(rcode_name(ResponseCode::Unknown(3841)), "rcode 3841");
    }
}
