//! The principal of a verified client certificate: its subject in RFC 2253 form (as Java's
//! `X500Principal.getName()` writes it, which Kafka's rules are written against), mapped by
//! Kafka's `ssl.principal.mapping.rules`.

use regex::Regex;
use x509_parser::prelude::FromDer;
use x509_parser::prelude::X509Certificate;
use x509_parser::x509::X509Name;

/// The subject of a DER certificate, RFC 2253 form: the most specific name first
/// (`CN=app,OU=Ops,O=Example`), special characters escaped.
pub fn subject(der: &[u8]) -> Result<String, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    Ok(rfc2253(cert.subject()))
}

fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid, str::to_string);
                    let value = match atv.as_str() {
                        Ok(v) => escape(v),
                        Err(_) => format!("#{}", hex(atv.attr_value().data)),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    // RFC 2253 writes the sequence last to first.
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The keywords Java's RFC 2253 form uses; any other attribute is written as its OID.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Kafka's `ssl.principal.mapping.rules`, parsed.
#[derive(Debug, Clone)]
pub struct PrincipalRules(Vec<Rule>);

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Map { pattern: Regex, replacement: String, case: Case },
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl PrincipalRules {
    /// Parses rules as `tls.principal-mapping-rules` gives them; none is `DEFAULT` alone.
    pub fn parse(rules: &[String]) -> Result<PrincipalRules, String> {
        if rules.is_empty() {
            return Ok(PrincipalRules(vec![Rule::Default]));
        }
        rules.iter().map(|r| parse_rule(r.trim())).collect::<Result<_, _>>().map(PrincipalRules)
    }

    /// The name the first matching rule makes of `subject`, or `None` when no rule applies
    /// (the connection is then refused, as Kafka does).
    pub fn map(&self, subject: &str) -> Option<String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Some(subject.to_string()),
                Rule::Map { pattern, replacement, case } => {
                    if !pattern.is_match(subject) {
                        continue;
                    }
                    let name = pattern.replace(subject, replacement.as_str());
                    let name = match case {
                        Case::Keep => name.into_owned(),
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    };
                    if !name.is_empty() {
                        return Some(name);
                    }
                }
            }
        }
        None
    }
}

fn parse_rule(rule: &str) -> Result<Rule, String> {
    if rule == "DEFAULT" {
        return Ok(Rule::Default);
    }
    let bad = |why: &str| {
        format!("rule `{rule}`: {why} (expected RULE:pattern/replacement/[LU] or DEFAULT)")
    };
    let body = rule.strip_prefix("RULE:").ok_or_else(|| bad("unknown form"))?;
    let parts = split_unescaped(body);
    let [pattern, replacement, flags] = parts.as_slice() else {
        return Err(bad("needs pattern/replacement/"));
    };
    let case = match flags.as_str() {
        "" => Case::Keep,
        "L" => Case::Lower,
        "U" => Case::Upper,
        f => return Err(bad(&format!("unknown flag `{f}`"))),
    };
    let pattern =
        Regex::new(&format!("^(?:{pattern})$")).map_err(|e| bad(&format!("pattern: {e}")))?;
    Ok(Rule::Map { pattern, replacement: java_replacement(replacement), case })
}

/// Splits at `/` not escaped by a backslash; `\/` becomes `/`, other escapes are kept for
/// the regex.
fn split_unescaped(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('/') => parts.last_mut().expect("one part").push('/'),
                Some(n) => {
                    let p = parts.last_mut().expect("one part");
                    p.push('\\');
                    p.push(n);
                }
                None => parts.last_mut().expect("one part").push('\\'),
            },
            '/' => parts.push(String::new()),
            c => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

/// Java's replacement syntax (`$1`, `\$`) in the regex crate's (`${1}`, `$$`).
fn java_replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(n) => out.push(n),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> PrincipalRules {
        PrincipalRules::parse(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn kafka_rules_map_subjects() {
        let r = rules(&[
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L",
            "DEFAULT",
        ]);
        assert_eq!(r.map("CN=kafka-app,OU=ServiceUsers,O=Example").as_deref(), Some("kafka-app"));
        assert_eq!(r.map("CN=Admin,OU=Ops,O=Example").as_deref(), Some("admin@ops"));
        assert_eq!(r.map("CN=plain").as_deref(), Some("CN=plain"));
        let strict = rules(&["RULE:^CN=([a-z]+)$/$1/U"]);
        assert_eq!(strict.map("CN=app").as_deref(), Some("APP"));
        assert_eq!(strict.map("CN=app,O=x"), None, "no rule applies: refused");
        assert_eq!(rules(&[]).map("CN=x,O=y").as_deref(), Some("CN=x,O=y"));
    }

    #[test]
    fn bad_rules_are_refused_with_the_rule() {
        for bad in ["RULE:x", "RULE:(/a/", "RULE:a/b/Q", "MAP:a/b/"] {
            let e = PrincipalRules::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn subjects_read_most_specific_first_and_escaped() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "NL");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc.");
        dn.push(rcgen::DnType::CommonName, "app+1");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject(cert.der()).unwrap(), r"CN=app\+1,O=Example\, Inc.,C=NL");
        assert!(subject(b"not a certificate").is_err());
    }
}
