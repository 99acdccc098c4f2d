use super::*;

const DELAY: Duration = Duration::from_millis(100);

fn join(member: &str, instance: Option<&str>, protocols: &[(&str, &[u8])]) -> Join {
    Join {
        member_id: member.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|(n, m)| (n.to_string(), m.to_vec())).collect(),
    }
}

fn consumer(member: &str) -> Join {
    join(member, None, &[("range", b"r"), ("roundrobin", b"rr")])
}

type Pending<T> = oneshot::Receiver<Result<T, Error>>;

fn do_join(rt: &mut Runtime, j: Join, id: &str, now: Instant) -> Pending<Joined> {
    let (tx, rx) = oneshot::channel();
    match rt.join(j, id.into(), tx, now, DELAY).unwrap() {
        None => rx,
        Some((joined, tx)) => {
            tx.send(Ok(joined)).unwrap();
            rx
        }
    }
}

fn answer<T>(rx: &mut Pending<T>) -> Option<Result<T, Error>> {
    rx.try_recv().ok()
}

fn deliver(replies: Vec<(Joined, Reply<Joined>)>) {
    for (j, r) in replies {
        let _ = r.send(Ok(j));
    }
}

fn empty() -> Runtime {
    Runtime::from_replicated(ClassicGroup::default(), Instant::now())
}

/// Members "a" (the leader) and "b" at generation 1, stable.
fn stable_pair(t0: Instant) -> Runtime {
    let mut rt = empty();
    let _a = do_join(&mut rt, consumer(""), "a", t0);
    let _b = do_join(&mut rt, consumer(""), "b", t0);
    deliver(rt.try_complete_join(t0 + DELAY));
    let (tx, _) = oneshot::channel();
    let SyncStep::Replicate(g) = rt.sync("a", 1, vec![], tx, t0).unwrap() else { panic!() };
    rt.complete_sync(g);
    assert_eq!(rt.phase, Phase::Stable);
    rt
}

/// Two members form a generation: the first is leader and alone sees both members'
/// metadata; the leader's SyncGroup hands each its assignment, after replication.
#[test]
fn two_members_form_a_generation() {
    let t0 = Instant::now();
    let mut rt = empty();
    let mut a = do_join(&mut rt, consumer(""), "a", t0);
    let mut b = do_join(&mut rt, consumer(""), "b", t0);
    assert!(answer(&mut a).is_none(), "parked until the initial delay passes");
    assert!(rt.try_complete_join(t0).is_empty(), "the initial delay waits for more members");
    deliver(rt.try_complete_join(t0 + DELAY));
    let ja = answer(&mut a).unwrap().unwrap();
    let jb = answer(&mut b).unwrap().unwrap();
    assert_eq!((ja.generation, ja.leader.as_str(), ja.protocol.as_str()), (1, "a", "range"));
    assert_eq!(ja.members.len(), 2, "the leader gets every member's metadata");
    assert_eq!(ja.members[1], ("b".into(), None, b"r".to_vec()));
    assert!(jb.members.is_empty(), "followers get none");
    assert_eq!(rt.phase, Phase::CompletingRebalance);

    // The follower's sync waits for the leader's.
    let (tx, mut sb) = oneshot::channel();
    assert!(matches!(rt.sync("b", 1, vec![], tx, t0).unwrap(), SyncStep::Parked));
    assert!(matches!(
        rt.sync("b", 0, vec![], oneshot::channel().0, t0),
        Err(Error::IllegalGeneration(_))
    ));
    let (tx, mut sa) = oneshot::channel();
    let assignments = vec![("a".into(), b"A".to_vec()), ("b".into(), b"B".to_vec())];
    let SyncStep::Replicate(g) = rt.sync("a", 1, assignments, tx, t0).unwrap() else {
        panic!("the leader's sync replicates");
    };
    assert_eq!(g.members["b"].assignment, b"B");
    for (a, r) in rt.complete_sync(g) {
        r.send(Ok(a)).unwrap();
    }
    assert_eq!(answer(&mut sa).unwrap().unwrap(), b"A");
    assert_eq!(answer(&mut sb).unwrap().unwrap(), b"B");
    assert_eq!(rt.phase, Phase::Stable);
    assert!(rt.heartbeat("a", 1, t0).is_ok());
    assert!(matches!(rt.heartbeat("zz", 1, t0), Err(Error::UnknownMemberId(_))));
    assert!(matches!(rt.heartbeat("a", 0, t0), Err(Error::IllegalGeneration(_))));
    assert!(rt.validate_commit("a", 1).is_ok());
    assert!(matches!(rt.validate_commit("a", 2), Err(Error::IllegalGeneration(_))));
    assert!(matches!(rt.validate_commit("", -1), Err(Error::UnknownMemberId(_))));
    assert_eq!(rt.settled().unwrap().generation, 1);
}

/// A third member joining a stable group: heartbeats say REBALANCE_IN_PROGRESS, the others
/// rejoin, generation 2 forms with all three; a member that does not rejoin by the deadline
/// is dropped.
#[test]
fn joins_and_silence_rebalance() {
    let t0 = Instant::now();
    let mut rt = stable_pair(t0);

    let mut c = do_join(&mut rt, consumer(""), "c", t0);
    assert!(matches!(rt.heartbeat("a", 1, t0), Err(Error::RebalanceInProgress(_))));
    assert!(rt.validate_commit("a", 1).is_ok(), "members commit before giving partitions up");
    assert!(rt.settled().is_none(), "nothing replicated mid-rebalance");
    let mut a = do_join(&mut rt, consumer("a"), "unused", t0);
    assert!(rt.try_complete_join(t0).is_empty(), "b has not rejoined");
    // b stays silent: at the deadline (the longest rebalance timeout) it is out.
    deliver(rt.try_complete_join(t0 + Duration::from_secs(31)));
    let ja = answer(&mut a).unwrap().unwrap();
    assert_eq!(ja.generation, 2);
    assert_eq!(ja.leader, "a", "the leader stays while it is a member");
    assert_eq!(ja.members.len(), 2);
    assert_eq!(answer(&mut c).unwrap().unwrap().member_id, "c");
    assert!(!rt.group.members.contains_key("b"));
    assert!(
        matches!(rt.validate_commit("a", 2), Err(Error::RebalanceInProgress(_))),
        "no commits until the assignments are out"
    );
}

/// Sessions expire; leaving empties the group.
#[test]
fn expiry_and_leave() {
    let t0 = Instant::now();
    let mut rt = stable_pair(t0);
    rt.heartbeat("a", 1, t0 + Duration::from_secs(9)).unwrap();
    assert_eq!(rt.expire(t0 + Duration::from_secs(11)), ["b"]);
    assert_eq!(rt.phase, Phase::PreparingRebalance);
    assert!(rt.leave("a", None, t0).unwrap());
    assert_eq!(rt.phase, Phase::Empty);
    let settled = rt.settled().unwrap();
    assert!(settled.members.is_empty());
    assert!(rt.validate_commit("", -1).is_ok(), "standalone commits to an empty group");
    assert!(matches!(rt.leave("a", None, t0), Err(Error::UnknownMemberId(_))));
}

/// A static member restarting under a new member id takes its old place and assignment
/// without a rebalance; its old id is fenced.
#[test]
fn static_members_come_back_without_a_rebalance() {
    let t0 = Instant::now();
    let mut rt = empty();
    let p: &[(&str, &[u8])] = &[("range", b"r")];
    let _a = do_join(&mut rt, join("", Some("i-a"), p), "a1", t0);
    let _b = do_join(&mut rt, join("", Some("i-b"), p), "b1", t0);
    deliver(rt.try_complete_join(t0 + DELAY));
    let (tx, _) = oneshot::channel();
    let assignments = vec![("a1".into(), b"A".to_vec()), ("b1".into(), b"B".to_vec())];
    let SyncStep::Replicate(g) = rt.sync("a1", 1, assignments, tx, t0).unwrap() else { panic!() };
    rt.complete_sync(g);

    // b restarts: a new member id, the same instance id.
    let mut b = do_join(&mut rt, join("", Some("i-b"), p), "b2", t0);
    let jb = answer(&mut b).unwrap().unwrap();
    assert_eq!((jb.member_id.as_str(), jb.generation), ("b2", 1), "no new generation");
    assert_eq!(rt.phase, Phase::Stable);
    let (tx, mut sb) = oneshot::channel();
    let SyncStep::Answer(a, tx) = rt.sync("b2", 1, vec![], tx, t0).unwrap() else { panic!() };
    tx.send(Ok(a)).unwrap();
    assert_eq!(answer(&mut sb).unwrap().unwrap(), b"B", "its old assignment");
    assert!(matches!(rt.heartbeat("b1", 1, t0), Err(Error::FencedInstanceId(_))));
    assert!(rt.heartbeat("a1", 1, t0).is_ok(), "the others are undisturbed");
    // The leader too: it gets the members but keeps the assignments.
    let mut a = do_join(&mut rt, join("", Some("i-a"), p), "a2", t0);
    let ja = answer(&mut a).unwrap().unwrap();
    assert_eq!((ja.leader.as_str(), ja.generation, ja.skip_assignment), ("a2", 1, true));
    assert_eq!(ja.members.len(), 2);
    assert_eq!(rt.phase, Phase::Stable, "no rebalance");
    let (tx, _) = oneshot::channel();
    let SyncStep::Answer(a, _) =
        rt.sync("a2", 1, vec![("a2".into(), b"X".to_vec())], tx, t0).unwrap()
    else {
        panic!("a stable group answers syncs at once")
    };
    assert_eq!(a, b"A", "assignments stand");
    // Leaving by instance id.
    assert!(rt.leave("", Some("i-b"), t0).unwrap());
    assert!(!rt.group.members.contains_key("b2"));
}

/// Protocol checks: type and a protocol everyone supports; the most preferred one wins.
#[test]
fn protocols_must_fit() {
    let t0 = Instant::now();
    let mut rt = empty();
    let _a = do_join(&mut rt, join("", None, &[("x", b""), ("y", b"")]), "a", t0);
    let _b = do_join(&mut rt, join("", None, &[("y", b""), ("x", b"")]), "b", t0);
    let mut c = do_join(&mut rt, join("", None, &[("y", b"")]), "c", t0);
    let bad = join("", None, &[("z", b"")]);
    let (tx, _) = oneshot::channel();
    assert!(matches!(
        rt.join(bad, "d".into(), tx, t0, DELAY),
        Err(Error::InconsistentGroupProtocol(_))
    ));
    let mut other = join("", None, &[("y", b"")]);
    other.protocol_type = "connect".into();
    let (tx, _) = oneshot::channel();
    assert!(matches!(
        rt.join(other, "e".into(), tx, t0, DELAY),
        Err(Error::InconsistentGroupProtocol(_))
    ));
    deliver(rt.try_complete_join(t0 + DELAY));
    assert_eq!(answer(&mut c).unwrap().unwrap().protocol, "y", "the only one all support");
}
