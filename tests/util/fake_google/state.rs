//! The fake's state behind one lock, and what every request passes through there:
//! counting, queued faults, the bearer token, the quota, the request log.
use super::*;

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) stop: AtomicBool,
    pub(super) token_uri: String,
}

impl Shared {
    /// The state lock. A panic while holding it (caught per request) must not disable
    /// the fake, so poisoning is ignored: every mutation leaves the state consistent.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct State {
    pub(super) accounts: BTreeSet<String>,
    pub(super) tokens: HashMap<String, IssuedToken>,
    pub(super) spreadsheets: BTreeMap<String, Spreadsheet>,
    pub(super) rules: Rules,
    pub(super) usage: HashMap<String, Usage>,
    /// Sheets and token faults, in the order they were queued.
    pub(super) faults: VecDeque<QueuedFault>,
    pub(super) outage_until: Option<Instant>,
    pub(super) stats: Stats,
    pub(super) log: VecDeque<LoggedRequest>,
    /// When the fake started (the request log's clock).
    pub(super) started: Instant,
    pub(super) rng: Rng,
}

pub(super) struct IssuedToken {
    pub(super) account: String,
    pub(super) expires_at: Instant,
}

/// Quota usage of one account. `writes`/`reads` hold the admitted requests within the
/// window; `write_arrivals` every write that reached the check (for the max stat).
#[derive(Default)]
pub(super) struct Usage {
    pub(super) writes: VecDeque<Instant>,
    pub(super) reads: VecDeque<Instant>,
    pub(super) write_arrivals: VecDeque<Instant>,
}

impl State {
    pub(super) fn new() -> State {
        State {
            accounts: BTreeSet::from([DEFAULT_ACCOUNT.to_string()]),
            tokens: HashMap::new(),
            spreadsheets: BTreeMap::new(),
            rules: Rules::default(),
            usage: HashMap::new(),
            faults: VecDeque::new(),
            outage_until: None,
            stats: Stats::default(),
            log: VecDeque::new(),
            started: Instant::now(),
            rng: Box::new(super::super::rng::from_clock().1),
        }
    }

    pub(super) fn count_arrival(&mut self, kind: RequestKind) {
        *self.stats.by_kind.entry(kind).or_default() += 1;
    }

    /// The first queued fault that hits a request of `kind`, and what it matched.
    pub(super) fn take_fault(&mut self, kind: RequestKind) -> Option<(Matching, Fault)> {
        let index = self.faults.iter().position(|q| q.matching.matches(kind))?;
        let entry = &mut self.faults[index];
        let taken = (entry.matching, entry.fault.clone());
        entry.remaining -= 1;
        if entry.remaining == 0 {
            self.faults.remove(index);
        }
        match kind {
            RequestKind::Token => self.stats.token_faults_consumed += 1,
            _ => self.stats.faults_consumed += 1,
        }
        Some(taken)
    }

    /// A new token for `account` and its lifetime in seconds: `lifetime_secs`, or the
    /// configured one, clamped to 1 s … 10 years.
    pub(super) fn issue_token(&mut self, account: &str, lifetime_secs: Option<u64>, now: Instant) -> (String, u64) {
        self.tokens.retain(|_, t| t.expires_at > now);
        self.stats.tokens_issued += 1;
        let token = format!("ya29.fake-{}", self.stats.tokens_issued);
        let lifetime = lifetime_secs
            .unwrap_or(self.rules.token_lifetime_secs)
            .clamp(1, MAX_TOKEN_LIFETIME_SECS);
        let expires_at = now + Duration::from_secs(lifetime);
        let account = account.to_string();
        self.tokens.insert(token.clone(), IssuedToken { account, expires_at });
        (token, lifetime)
    }

    pub(super) fn record(
        &mut self,
        method: &str,
        target: &str,
        kind: RequestKind,
        account: Option<String>,
        status: Option<u16>,
        note: String,
    ) {
        if self.log.len() >= REQUEST_LOG_CAPACITY {
            self.log.pop_front();
        }
        let entry = LoggedRequest {
            at: self.started.elapsed(),
            method: method.to_string(),
            path: target.to_string(),
            kind,
            account,
            status,
            note,
        };
        log::debug!("Fake Google: {entry}.");
        self.log.push_back(entry);
    }

    /// The bearer token's account, or the 401 to send.
    pub(super) fn authenticate(&self, req: &HttpRequest, now: Instant) -> Result<String, Response> {
        let Some(value) = req.header("authorization") else {
            return Err(unauthenticated(false));
        };
        let token = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match token.and_then(|t| self.tokens.get(t)) {
            Some(issued) if now < issued.expires_at => Ok(issued.account.clone()),
            _ => Err(unauthenticated(true)),
        }
    }

    /// Charges one request to the account's per-minute quota, or returns the 429.
    pub(super) fn charge_quota(&mut self, account: &str, kind: RequestKind, now: Instant) -> Result<(), Response> {
        let window = self.rules.quota_window.max(Duration::from_millis(1));
        let usage = self.usage.entry(account.to_string()).or_default();
        for queue in [&mut usage.writes, &mut usage.reads, &mut usage.write_arrivals] {
            while queue.front().is_some_and(|&t| now.duration_since(t) >= window) {
                queue.pop_front();
            }
        }
        let (admitted, limit) = if kind.is_write() {
            usage.write_arrivals.push_back(now);
            let seen = usage.write_arrivals.len() as u64;
            self.stats.max_writes_in_window = self.stats.max_writes_in_window.max(seen);
            (&mut usage.writes, self.rules.write_quota)
        } else {
            (&mut usage.reads, self.rules.read_quota)
        };
        if admitted.len() >= limit as usize {
            self.stats.rate_limited += 1;
            self.stats.quota_exceeded += 1;
            return Err(quota_error(kind.is_write(), limit));
        }
        admitted.push_back(now);
        Ok(())
    }
}
