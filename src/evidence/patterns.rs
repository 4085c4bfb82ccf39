//! Log template mining (Drain: He et al., "Drain: An Online Log Parsing Approach with
//! Fixed Depth Tree", ICWS 2017, as in drain3), so that millions of raw log lines compact
//! into a few hundred templates with counts, time ranges, examples and parameter samples.
//!
//! Lines are split on whitespace (a `[...]` holding spaces stays one token: thread names
//! and lists must not change the token count) and every token is masked by a hand-written
//! scanner, not a regex set: numbers, ids (`blk_<*>`), IPv4/IPv6, host:port, hex, UUIDs,
//! durations, timestamps and dates, node names, paths, e-mails, optionally quoted strings.
//! The parse tree's first layer is the token count, the next `depth - 1` layers the first
//! tokens that held nothing variable, and its leaves hold groups. A line joins the most
//! similar group of its leaf when the similarity reaches the threshold, and the positions
//! where they differ become `<*>` in the group's template.
//!
//! Whole raw lines work too (no header stripping): masked header fields, log levels and
//! the tree keys (mostly the header's constants) are left out of the similarity, so that
//! `<*> <*> INFO dfs.DataNode: <message>` headers do not make unrelated messages similar.
//!
//! Hot path: one pass over the bytes per line into reused buffers, tokens compared as
//! 64-bit hashes, and an exact-template lookup before the tree is searched. Memory is
//! bounded: `max_groups` groups (then one overflow group), `max_tokens` tokens of
//! `max_token_bytes` bytes per line, capped examples and parameter samples.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// How a parameter is written in templates.
pub const WILDCARD: &str = "<*>";

/// Template of the group that takes the lines arriving after `max_groups` was reached.
pub const OVERFLOW_TEMPLATE: &str = "<overflow: group cap reached>";

/// Settings of the miner. `Default` is the one setting used for every log source (tuned
/// once on the eight labelled Loghub-2k systems, see BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DrainConfig {
    /// Layers of the parse tree under its root, leaves excluded: the token-count layer
    /// plus `depth - 1` layers keyed by the first tokens without a variable part (4: the
    /// first three such words). More layers split events on variable words (a user name
    /// early in a message); fewer let header constants dominate a leaf.
    pub depth: usize,
    /// A line joins a group when it matches at least this share of the group's template
    /// positions that tell something (see `similarity`: keys, levels and parameter against
    /// parameter are left out). Not drain3's scale: there every masked token counts.
    /// 0.5: a line of two telling words, one different, still joins.
    pub similarity: f64,
    /// Children per tree node; tokens beyond it share a `<*>` child.
    pub max_children: usize,
    /// Groups kept; lines that would open one more join the overflow group.
    pub max_groups: usize,
    /// Characters that separate tokens besides whitespace.
    pub extra_delimiters: Vec<char>,
    /// Mask tokens quoted with `"` or `'` as a whole.
    pub mask_quoted: bool,
    /// Keep parameter samples and distinct counts per `<*>` position (costs a hash per
    /// parameter per line).
    pub track_parameters: bool,
    /// Example lines kept per group.
    pub max_examples: usize,
    /// Bytes kept of one example line.
    pub max_example_bytes: usize,
    /// Sample values kept per parameter position.
    pub parameter_samples: usize,
    /// Distinct values counted per parameter position before the count stops.
    pub parameter_distinct_cap: usize,
    /// Tokens of one line; the rest of a longer line becomes one trailing `<*>`.
    pub max_tokens: usize,
    /// Longer tokens are parameters whatever they hold (blobs, base64, JSON).
    pub max_token_bytes: usize,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            depth: 4,
            similarity: 0.5,
            max_children: 100,
            max_groups: 100_000,
            extra_delimiters: Vec::new(),
            mask_quoted: false,
            track_parameters: true,
            max_examples: 3,
            max_example_bytes: 4096,
            parameter_samples: 5,
            parameter_distinct_cap: 100,
            max_tokens: 512,
            max_token_bytes: 256,
        }
    }
}

/// One group as reported: its template and what was seen of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    pub id: usize,
    pub template: String,
    pub count: u64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Up to `max_examples` whole lines, the first ones seen.
    pub examples: Vec<String>,
    /// One entry per template token holding a `<*>`, in token order.
    pub parameters: Vec<ParamSummary>,
    /// The group of the lines that arrived after the group cap was reached.
    pub overflow: bool,
}

/// What was seen at one parameter position of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamSummary {
    /// Index of the token in the template (tokens split on single spaces).
    pub position: usize,
    /// The first distinct raw values seen there (up to `parameter_samples`).
    pub samples: Vec<String>,
    /// Distinct values seen, counted up to `parameter_distinct_cap`.
    pub distinct: usize,
    /// True when `distinct` hit the cap (there may be more).
    pub distinct_capped: bool,
}

/// A streaming template miner. Memory is bounded by `max_groups` times the template size.
#[derive(Debug)]
pub struct Drain {
    config: DrainConfig,
    similarity: f64,
    key_layers: usize,
    /// Byte classes of this configuration: 0 for token separators.
    classes: [u8; 256],
    /// Extra delimiters outside ASCII, replaced by spaces before tokenising (slow path).
    wide_separators: Vec<char>,
    /// Root children by token count.
    by_length: HashMap<usize, u32, IdBuild>,
    nodes: Vec<Node>,
    groups: Vec<Group>,
    /// Groups merged into another point to it; a live group points to itself.
    redirect: Vec<u32>,
    /// Template hash -> live group, for exact matches and for merging equal templates.
    by_template: HashMap<u64, u32, IdBuild>,
    live_groups: usize,
    overflow: Option<u32>,
    line: Line,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<u64, u32, IdBuild>,
    /// Child for tokens past `max_children`.
    wildcard: Option<u32>,
    groups: Vec<u32>,
}

#[derive(Debug)]
struct Group {
    tokens: Vec<u64>,
    texts: Texts,
    hash: u64,
    leaf: Option<u32>,
    count: u64,
    first_seen: Option<i64>,
    last_seen: Option<i64>,
    examples: Vec<String>,
    /// Indexed by token position; `Some` where the template holds a `<*>`.
    params: Vec<Option<ParamStats>>,
    live: bool,
}

/// A template's token texts in one string: one allocation per group rather than one per
/// token (groups are created by the thousand).
#[derive(Debug, Default)]
struct Texts {
    text: String,
    /// Each token's range in `text`; `None` once it became `<*>`.
    spans: Vec<Option<(u32, u32)>>,
}

impl Texts {
    fn new<'a>(tokens: impl Iterator<Item = &'a [u8]>) -> Texts {
        let mut texts = Texts::default();
        for token in tokens {
            let start = texts.text.len() as u32;
            texts.text.push_str(&String::from_utf8_lossy(token));
            texts.spans.push(Some((start, texts.text.len() as u32)));
        }
        texts
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, i: usize) -> &str {
        match self.spans.get(i) {
            Some(Some((a, b))) => self.text.get(*a as usize..*b as usize).unwrap_or_default(),
            Some(None) => WILDCARD,
            None => "",
        }
    }

    fn set_wild(&mut self, i: usize) {
        if let Some(span) = self.spans.get_mut(i) {
            *span = None;
        }
    }

    /// The tokens joined by single spaces.
    fn join(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + self.spans.len() * 4);
        for i in 0..self.len() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.get(i));
        }
        out
    }
}

#[derive(Debug, Default, Clone)]
struct ParamStats {
    samples: Vec<String>,
    /// Sorted hashes of distinct values, at most `parameter_distinct_cap`.
    seen: Vec<u64>,
    capped: bool,
}

/// The current line, tokenised and masked into buffers reused across lines.
#[derive(Debug, Default)]
struct Line {
    tokens: Vec<Token>,
    /// Masked texts of the tokens that needed masking.
    masked: Vec<u8>,
    hashes: Vec<u64>,
    keys: Vec<u64>,
    /// `skip[i]`: token `i` keyed the tree, leave it out of similarity.
    skip: Vec<bool>,
    /// Scratch for the parts of a bracketed group.
    parts: Vec<u8>,
    part_tokens: Vec<Token>,
    /// `message` with wide separators replaced, when there are any.
    widened: String,
    scratch: MaskScratch,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    /// The raw token in the source line.
    raw: (u32, u32),
    /// The masked text: in `Line::masked` when `in_masked`, else the raw token itself.
    text: (u32, u32),
    in_masked: bool,
    kind: Kind,
}

impl Token {
    const EMPTY: Token = Token {
        raw: (0, 0),
        text: (0, 0),
        in_masked: false,
        kind: Kind::Word,
    };

    fn text<'a>(&self, source: &'a [u8], masked: &'a [u8]) -> &'a [u8] {
        let (a, b) = self.text;
        let buf = if self.in_masked { masked } else { source };
        buf.get(a as usize..b as usize).unwrap_or_default()
    }

    /// The token as it stands in the line.
    fn raw<'a>(&self, source: &'a [u8]) -> &'a [u8] {
        let (a, b) = self.raw;
        source.get(a as usize..b as usize).unwrap_or_default()
    }

    /// Rewrites the token as `lead<*>trail` in `masked`, a parameter (its raw span stays).
    fn make_wild(&mut self, masked: &mut Vec<u8>, lead: &[u8], trail: &[u8]) {
        let out = masked.len();
        masked.extend_from_slice(lead);
        masked.extend_from_slice(WILDCARD.as_bytes());
        masked.extend_from_slice(trail);
        self.text = (out as u32, masked.len() as u32);
        self.in_masked = true;
        self.kind = Kind::Param;
    }
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    digits: bool,
    variable: bool,
}

/// Grows `v` to `n` elements and empties it: its memory is then allocated and touched.
fn touched<T: Clone>(v: &mut Vec<T>, n: usize, fill: T) {
    v.resize(n, fill);
    v.clear();
}

impl Line {
    /// See [`Tokenizer::warm_up`].
    fn warm_up(&mut self) {
        self.scratch.cache.warm_up();
        touched(&mut self.tokens, 256, Token::EMPTY);
        touched(&mut self.masked, 4096, 0);
        touched(&mut self.hashes, 256, 0);
        touched(&mut self.keys, 256, 0);
        touched(&mut self.skip, 256, false);
    }
}

/// Tokenises lines away from the miner (another thread), for [`Drain::add_tokenized`].
struct Tokenizer {
    config: DrainConfig,
    key_layers: usize,
    classes: [u8; 256],
    /// Buffers and token cache kept from chunk to chunk.
    line: Line,
    /// Output buffers made ready by `warm_up`, used before the block's shared ones.
    spare: Vec<TokenizedLines>,
}

/// Lines tokenised by a [`Tokenizer`]: per line its token hashes and which tokens keyed
/// the tree, flat.
#[derive(Debug, Default)]
struct TokenizedLines {
    hashes: Vec<u64>,
    keyed: Vec<bool>,
    /// End of each line's tokens in `hashes`.
    ends: Vec<usize>,
}

impl Tokenizer {
    /// Output buffers `warm_up` prepares: the helper runs a few chunks ahead at most.
    const WARM_BUFFERS: usize = 4;
    /// Tokens one warmed output buffer holds (about 20 per line).
    const WARM_TOKENS: usize = CHUNK_LINES * 24;

    /// Allocates and touches this tokenizer's buffers and cache, so that a helper
    /// waiting for the first block (while it is read) spares the threads mining it the
    /// page faults of fresh memory (about 1 µs per 4 KiB on a VM) in their first chunks.
    /// Stops early once `ready()`: the lines are there, and a helper late to them costs
    /// more than the faults it spares.
    fn warm_up(&mut self, ready: impl Fn() -> bool) {
        self.line.warm_up();
        while self.spare.len() < Self::WARM_BUFFERS && !ready() {
            let mut out = TokenizedLines::default();
            touched(&mut out.hashes, Self::WARM_TOKENS, 0);
            touched(&mut out.keyed, Self::WARM_TOKENS, false);
            touched(&mut out.ends, CHUNK_LINES, 0);
            self.spare.push(out);
        }
    }

    #[cfg(test)]
    fn tokenize_all(&mut self, lines: &[&str]) -> TokenizedLines {
        let mut out = TokenizedLines::default();
        self.tokenize_into(lines, &mut out);
        out
    }

    /// Tokenises `lines` into `out` (emptied first; its buffers are reused: fresh memory
    /// costs a page fault per 4 KiB touched).
    fn tokenize_into(&mut self, lines: &[&str], out: &mut TokenizedLines) {
        out.hashes.clear();
        out.keyed.clear();
        out.ends.clear();
        // About one token per 8 bytes; it grows if need be.
        let bytes: usize = lines.iter().map(|l| l.len()).sum();
        let tokens = bytes / 8 + lines.len();
        out.hashes.reserve(tokens);
        out.keyed.reserve(tokens);
        out.ends.reserve(lines.len());
        let line = &mut self.line;
        for source in lines {
            tokenize(&self.config, self.key_layers, &self.classes, source, line);
            out.hashes.extend_from_slice(&line.hashes);
            out.keyed.extend_from_slice(&line.skip);
            out.ends.push(out.hashes.len());
        }
    }
}

impl TokenizedLines {
    fn line(&self, i: usize) -> (&[u64], &[bool]) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let end = self.ends[i];
        (&self.hashes[start..end], &self.keyed[start..end])
    }
}

impl Drain {
    pub fn new(config: DrainConfig) -> Self {
        let mut classes = CLASSES;
        for b in [b' ', b'\t', b'\n', b'\r', 0x0b, 0x0c] {
            classes[usize::from(b)] = 0;
        }
        let mut wide_separators = Vec::new();
        for &c in &config.extra_delimiters {
            if c.is_ascii() {
                classes[c as usize] = 0;
            } else {
                wide_separators.push(c);
            }
        }
        let similarity = if config.similarity.is_finite() {
            config.similarity.clamp(0.0, 1.0)
        } else {
            DrainConfig::default().similarity
        };
        Drain {
            key_layers: config.depth.saturating_sub(1),
            similarity,
            classes,
            wide_separators,
            by_length: HashMap::default(),
            nodes: Vec::new(),
            groups: Vec::new(),
            redirect: Vec::new(),
            by_template: HashMap::default(),
            live_groups: 0,
            overflow: None,
            line: Line::default(),
            config,
        }
    }

    pub fn config(&self) -> &DrainConfig {
        &self.config
    }

    /// Adds one message (the log line's message part), returns the group id it joined.
    /// Ids stay valid: when two groups' templates become equal they merge, and
    /// [`Drain::resolve`] (used by `template`) maps the old id to the surviving one.
    pub fn add(&mut self, message: &str) -> usize {
        self.add_inner(message, None, None)
    }

    /// Same, with a timestamp (e.g. ms since the epoch) and the full line kept as an example.
    pub fn add_with(&mut self, message: &str, at: Option<i64>, example: &str) -> usize {
        self.add_inner(message, at, Some(example))
    }

    /// Number of groups reported by [`Drain::groups`] (the overflow group included).
    pub fn group_count(&self) -> usize {
        self.live_groups + usize::from(self.overflow.is_some())
    }

    /// The group a returned id stands for now (groups whose templates became equal merge).
    pub fn resolve(&self, group: usize) -> usize {
        let mut id = group;
        // Merge chains are short (each merge points at an older live group); the bound
        // only guards against a bug turning into a hang.
        for _ in 0..self.redirect.len() {
            match self.redirect.get(id) {
                Some(&next) if next as usize != id => id = next as usize,
                _ => break,
            }
        }
        id
    }

    /// Tokens joined by single spaces, `<*>` for parameters; empty for an unknown id.
    pub fn template(&self, group: usize) -> String {
        let id = self.resolve(group);
        if self.overflow == Some(id as u32) {
            return OVERFLOW_TEMPLATE.to_string();
        }
        match self.groups.get(id) {
            Some(g) => g.texts.join(),
            None => String::new(),
        }
    }

    /// All groups, by count descending (then id).
    pub fn groups(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.live)
            .map(|(id, g)| {
                let overflow = self.overflow == Some(id as u32);
                let parameters = g
                    .params
                    .iter()
                    .enumerate()
                    .filter_map(|(position, p)| {
                        p.as_ref().map(|p| ParamSummary {
                            position,
                            samples: p.samples.clone(),
                            distinct: p.seen.len(),
                            distinct_capped: p.capped,
                        })
                    })
                    .collect();
                GroupSummary {
                    id,
                    template: if overflow {
                        OVERFLOW_TEMPLATE.to_string()
                    } else {
                        g.texts.join()
                    },
                    count: g.count,
                    first_seen: g.first_seen,
                    last_seen: g.last_seen,
                    examples: g.examples.clone(),
                    parameters,
                    overflow,
                }
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        out
    }

    fn add_inner(&mut self, message: &str, at: Option<i64>, example: Option<&str>) -> usize {
        if self.wide_separators.is_empty() {
            tokenize(
                &self.config,
                self.key_layers,
                &self.classes,
                message,
                &mut self.line,
            );
            return self.place(message, at, example);
        }
        let mut widened = std::mem::take(&mut self.line.widened);
        widened.clear();
        widened.extend(message.chars().map(|c| {
            if self.wide_separators.contains(&c) {
                ' '
            } else {
                c
            }
        }));
        tokenize(
            &self.config,
            self.key_layers,
            &self.classes,
            &widened,
            &mut self.line,
        );
        let id = self.place(&widened, at, example);
        self.line.widened = widened;
        id
    }

    /// Finds or creates the group of the tokenised line and records the line in it.
    fn place(&mut self, source: &str, at: Option<i64>, example: Option<&str>) -> usize {
        let id = self.find_or_create(source, true);
        self.record(id, source, at, example);
        id as usize
    }

    /// `tokens_ready`: `line.tokens` and `line.masked` hold the line, not only its hashes
    /// (a line tokenised in another thread has only those); creating a group needs them.
    fn find_or_create(&mut self, source: &str, tokens_ready: bool) -> u32 {
        let hash = sequence_hash(&self.line.hashes);
        let exact = self
            .by_template
            .get(&hash)
            .copied()
            .filter(|&g| self.groups[g as usize].tokens == self.line.hashes);
        match exact {
            Some(g) => g,
            None => match self.search() {
                Some(g) => {
                    self.update_template(g);
                    self.resolve(g as usize) as u32
                }
                None => {
                    if !tokens_ready {
                        tokenize(
                            &self.config,
                            self.key_layers,
                            &self.classes,
                            source,
                            &mut self.line,
                        );
                    }
                    self.create(source, hash)
                }
            },
        }
    }

    /// Adds a line tokenised apart (see [`TokenizedLines`]); the same group as `add` gives.
    fn add_tokenized(&mut self, source: &str, hashes: &[u64], keyed: &[bool]) -> usize {
        if !self.parallel() {
            return self.add(source);
        }
        let line = &mut self.line;
        line.hashes.clear();
        line.hashes.extend_from_slice(hashes);
        line.skip.clear();
        line.skip.extend_from_slice(keyed);
        line.keys.clear();
        line.keys.extend(
            hashes
                .iter()
                .zip(keyed)
                .filter(|(_, &k)| k)
                .map(|(&h, _)| h),
        );
        let id = self.find_or_create(source, false);
        self.record(id, source, None, None);
        id as usize
    }

    /// Whether lines tokenised on another thread place the same (parameters need the
    /// tokens' raw spans; wide separators rewrite the line).
    fn parallel(&self) -> bool {
        !self.config.track_parameters && self.wide_separators.is_empty()
    }

    /// What another thread needs to tokenise lines the way this miner does.
    fn tokenizer(&self) -> Tokenizer {
        Tokenizer {
            config: self.config.clone(),
            key_layers: self.key_layers,
            classes: self.classes,
            line: Line::default(),
            spare: Vec::new(),
        }
    }

    /// Tree search: the leaf for the line's length and keys, then its most similar group.
    fn search(&self) -> Option<u32> {
        let line = &self.line;
        let mut node = *self.by_length.get(&line.hashes.len())?;
        for key in line.keys.iter().take(self.key_layers) {
            let here = &self.nodes[node as usize];
            node = match here.children.get(key) {
                Some(&child) => child,
                None => here.wildcard?,
            };
        }
        let mut best: Option<(f64, usize, u32)> = None;
        for &g in &self.nodes[node as usize].groups {
            let (sim, params) =
                similarity(&self.groups[g as usize].tokens, &line.hashes, &line.skip);
            if better(best, sim, params) {
                best = Some((sim, params, g));
            }
        }
        match best {
            Some((sim, _, g)) if sim >= self.similarity => Some(g),
            _ => None,
        }
    }

    fn create(&mut self, source: &str, hash: u64) -> u32 {
        if self.live_groups >= self.config.max_groups {
            return self.overflow_group();
        }
        let id = self.groups.len() as u32;
        let line = &self.line;
        let texts = Texts::new(
            line.tokens
                .iter()
                .map(|t| t.text(source.as_bytes(), &line.masked)),
        );
        let params = if self.config.track_parameters {
            (0..texts.len())
                .map(|i| texts.get(i).contains(WILDCARD).then(ParamStats::default))
                .collect()
        } else {
            Vec::new()
        };
        let tokens = line.hashes.clone();
        let leaf = self.leaf_for_insert();
        self.nodes[leaf as usize].groups.push(id);
        self.groups.push(Group {
            tokens,
            texts,
            hash,
            leaf: Some(leaf),
            count: 0,
            first_seen: None,
            last_seen: None,
            examples: Vec::new(),
            params,
            live: true,
        });
        self.redirect.push(id);
        self.by_template.insert(hash, id);
        self.live_groups += 1;
        id
    }

    fn overflow_group(&mut self) -> u32 {
        if let Some(id) = self.overflow {
            return id;
        }
        let id = self.groups.len() as u32;
        self.groups.push(Group {
            tokens: Vec::new(),
            texts: Texts::default(),
            hash: 0,
            leaf: None,
            count: 0,
            first_seen: None,
            last_seen: None,
            examples: Vec::new(),
            params: Vec::new(),
            live: true,
        });
        self.redirect.push(id);
        self.overflow = Some(id);
        id
    }

    /// Walks (and grows) the tree along the line's length and keys.
    fn leaf_for_insert(&mut self) -> u32 {
        let n = self.line.hashes.len();
        let mut node = match self.by_length.get(&n) {
            Some(&node) => node,
            None => {
                let node = self.new_node();
                self.by_length.insert(n, node);
                node
            }
        };
        for i in 0..self.key_layers.min(self.line.keys.len()) {
            let key = self.line.keys[i];
            let here = &self.nodes[node as usize];
            node = if let Some(&child) = here.children.get(&key) {
                child
            } else if here.children.len() < self.config.max_children {
                let child = self.new_node();
                self.nodes[node as usize].children.insert(key, child);
                child
            } else if let Some(child) = here.wildcard {
                child
            } else {
                let child = self.new_node();
                self.nodes[node as usize].wildcard = Some(child);
                child
            };
        }
        node
    }

    fn new_node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        (self.nodes.len() - 1) as u32
    }

    /// Turns the positions where the line differs from group `g` into `<*>`; merges `g`
    /// into an older group whose template became equal.
    fn update_template(&mut self, g: u32) {
        let wild = wildcard_hash();
        let line = &self.line;
        let group = &mut self.groups[g as usize];
        let mut changed = false;
        for (i, (t, &l)) in group.tokens.iter_mut().zip(&line.hashes).enumerate() {
            if *t != l && *t != wild {
                *t = wild;
                if let Some(slot) = group.params.get_mut(i) {
                    if slot.is_none() {
                        // The lines before had the old token here.
                        let mut stats = ParamStats::default();
                        stats.note(group.texts.get(i), &self.config);
                        *slot = Some(stats);
                    }
                }
                group.texts.set_wild(i);
                changed = true;
            }
        }
        if !changed {
            return;
        }
        let old_hash = group.hash;
        let new_hash = sequence_hash(&group.tokens);
        group.hash = new_hash;
        if self.by_template.get(&old_hash) == Some(&g) {
            self.by_template.remove(&old_hash);
        }
        match self.by_template.get(&new_hash).copied() {
            Some(other)
                if other != g
                    && self.groups[other as usize].tokens == self.groups[g as usize].tokens =>
            {
                let (keep, gone) = if other < g { (other, g) } else { (g, other) };
                self.merge(keep, gone);
                self.by_template.insert(new_hash, keep);
            }
            _ => {
                self.by_template.insert(new_hash, g);
            }
        }
    }

    fn merge(&mut self, keep: u32, gone: u32) {
        let taken = std::mem::replace(
            &mut self.groups[gone as usize],
            Group {
                tokens: Vec::new(),
                texts: Texts::default(),
                hash: 0,
                leaf: None,
                count: 0,
                first_seen: None,
                last_seen: None,
                examples: Vec::new(),
                params: Vec::new(),
                live: false,
            },
        );
        if let Some(leaf) = taken.leaf {
            self.nodes[leaf as usize].groups.retain(|&x| x != gone);
        }
        self.redirect[gone as usize] = keep;
        self.live_groups -= 1;
        let cap = self.config.max_examples;
        let keep_group = &mut self.groups[keep as usize];
        keep_group.count += taken.count;
        keep_group.first_seen = min_opt(keep_group.first_seen, taken.first_seen);
        keep_group.last_seen = max_opt(keep_group.last_seen, taken.last_seen);
        for e in taken.examples {
            if keep_group.examples.len() < cap {
                keep_group.examples.push(e);
            }
        }
        for (mine, theirs) in keep_group.params.iter_mut().zip(taken.params) {
            match (mine.as_mut(), theirs) {
                (Some(m), Some(t)) => m.absorb(t, &self.config),
                (None, Some(t)) => *mine = Some(t),
                (_, None) => {}
            }
        }
    }

    fn record(&mut self, id: u32, source: &str, at: Option<i64>, example: Option<&str>) {
        let config = &self.config;
        let line = &self.line;
        let Some(group) = self.groups.get_mut(id as usize) else {
            return;
        };
        group.count += 1;
        if let Some(t) = at {
            group.first_seen = Some(group.first_seen.map_or(t, |f| f.min(t)));
            group.last_seen = Some(group.last_seen.map_or(t, |l| l.max(t)));
        }
        if let Some(e) = example {
            if group.examples.len() < config.max_examples {
                group
                    .examples
                    .push(truncate(e, config.max_example_bytes).to_string());
            }
        }
        if config.track_parameters {
            for (slot, t) in group.params.iter_mut().zip(&line.tokens) {
                if let Some(stats) = slot {
                    let (a, b) = t.raw;
                    let raw = source.get(a as usize..b as usize).unwrap_or_default();
                    stats.note(raw, config);
                }
            }
        }
    }
}

impl ParamStats {
    fn note(&mut self, value: &str, config: &DrainConfig) {
        if self.capped && self.samples.len() >= config.parameter_samples {
            return;
        }
        let h = hash_bytes(value.as_bytes());
        match self.seen.binary_search(&h) {
            Ok(_) => {}
            Err(at) => {
                if self.seen.len() < config.parameter_distinct_cap {
                    self.seen.insert(at, h);
                } else {
                    self.capped = true;
                }
                if self.samples.len() < config.parameter_samples {
                    self.samples.push(truncate(value, 256).to_string());
                }
            }
        }
    }

    fn absorb(&mut self, other: ParamStats, config: &DrainConfig) {
        for s in other.samples {
            if self.samples.len() < config.parameter_samples && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
        for h in other.seen {
            if let Err(at) = self.seen.binary_search(&h) {
                if self.seen.len() < config.parameter_distinct_cap {
                    self.seen.insert(at, h);
                } else {
                    self.capped = true;
                }
            }
        }
        self.capped |= other.capped;
    }
}

/// What `investigator logs templates <file>` writes: for every input line, the id of its
/// group and that group's FINAL template (the whole input is read first).
pub fn templates_for_lines<S: AsRef<str>>(
    lines: impl Iterator<Item = S>,
    config: &DrainConfig,
) -> Vec<(usize, String)> {
    let (drain, assigned) = assign_lines(lines, config);
    let mut finals: Vec<Option<(usize, String)>> = vec![None; drain.groups.len()];
    assigned
        .into_iter()
        .map(|g| match finals.get_mut(g as usize) {
            Some(Some(done)) => done.clone(),
            Some(empty) => {
                let id = drain.resolve(g as usize);
                let done = (id, drain.template(id));
                *empty = Some(done.clone());
                done
            }
            None => (g as usize, String::new()),
        })
        .collect()
}

/// Figures of one [`write_templates`] run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplatesRun {
    pub lines: usize,
    pub groups: usize,
    /// Mining alone (lines already decoded and split in memory, as drain3 is timed),
    /// without reading, splitting or writing.
    pub parse_seconds: f64,
}

/// `investigator logs templates`: mines every line of `input` (split on `\n`, a trailing
/// `\r` dropped, nothing after a final `\n`; invalid UTF-8 replaced by U+FFFD), then
/// writes `<group id>\t<template>\n` per line. Streams: the input is read in 16 MiB
/// blocks and lines are mined in place, so memory is the miner plus 4 bytes per line (the
/// ids wait for the final templates); each group's output line is built once and copied.
/// `helper_thread`: tokenise on a second thread too (see `mine_lines`); the output is the
/// same either way.
pub fn write_templates(
    input: impl std::io::Read,
    config: &DrainConfig,
    helper_thread: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<TemplatesRun> {
    // A second thread pays on a small input only when a core is free for it now; then
    // it is started before reading, so that its start-up overlaps the read.
    let spare = helper_thread && spare_core();
    let helper = helper_thread.then_some(if spare {
        PARALLEL_MIN_LINES
    } else {
        BUSY_PARALLEL_MIN_LINES
    });
    write_templates_in_blocks(input, config, helper, spare, out, 1 << 24)
}

/// A block's lines: split on `\n`, a trailing `\r` dropped, nothing after a final `\n`
/// (an empty text has no line).
fn split_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect()
}

/// Whether another core looks free enough right now: more than one core, and at most one
/// runnable task per core (`/proc/loadavg`'s running count, this thread included). One
/// other task is allowed: the process reading our output is often still starting when we
/// look (a pipe, a harness), and the helper costs little if it gets no core (this thread
/// never waits for it). Where that cannot be read, assumed.
fn spare_core() -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return false;
    }
    let Ok(loadavg) = std::fs::read_to_string("/proc/loadavg") else {
        return true;
    };
    // `0.52 0.58 0.59 1/389 12345`: the fourth field is running/total.
    let running = loadavg
        .split_whitespace()
        .nth(3)
        .and_then(|field| field.split('/').next())
        .and_then(|n| n.parse::<usize>().ok());
    running.is_none_or(|running| running <= cores)
}

/// `helper_min_lines`: blocks of at least that many lines get a helper thread.
/// `early_helper`: start the first block's helper before reading, so that its start-up
/// overlaps the read (it waits for the lines, and ends unused if there are too few).
fn write_templates_in_blocks(
    mut input: impl std::io::Read,
    config: &DrainConfig,
    helper_min_lines: Option<usize>,
    early_helper: bool,
    out: &mut impl std::io::Write,
    block_bytes: usize,
) -> std::io::Result<TemplatesRun> {
    let mut config = config.clone();
    // Only ids and templates are wanted: skip the per-line bookkeeping.
    config.track_parameters = false;
    config.max_examples = 0;
    let mut drain = Drain::new(config);
    let mut assigned: Vec<u32> = Vec::new();
    let mut parse = std::time::Duration::ZERO;
    // The first block's text and lines, shared with the early helper; declared before
    // the scope so that the helper may borrow them.
    let first_text: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let first_lines: std::sync::OnceLock<Vec<&str>> = std::sync::OnceLock::new();
    let first_block: std::sync::OnceLock<SharedBlock<'_>> = std::sync::OnceLock::new();
    let early = early_helper && helper_min_lines.is_some() && drain.parallel();
    // Set once the first block's lines are read (or will not be helped with).
    let first_ready = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> std::io::Result<()> {
        // Told when the first block's lines are ready; dropped unused when not worth it.
        let (ready, wait) = std::sync::mpsc::channel::<()>();
        let mut ready = Some(ready);
        if early {
            let mut tokenizer = drain.tokenizer();
            let (first_block, first_ready) = (&first_block, &first_ready);
            let spawned = std::thread::Builder::new()
                .name("drain-tokenize".into())
                .spawn_scoped(scope, move || {
                    tokenizer.warm_up(|| first_ready.load(std::sync::atomic::Ordering::Relaxed));
                    if wait.recv().is_ok() {
                        if let Some(block) = first_block.get() {
                            block.help(&mut tokenizer);
                        }
                    }
                });
            if spawned.is_err() {
                ready = None;
            }
        } else {
            ready = None;
        }
        let mut block: Vec<u8> = vec![0; block_bytes.max(1)];
        // `block[..filled]` holds read bytes; a line carried over from the last read first.
        let mut filled = 0;
        let mut ended = false;
        while !ended {
            if filled == block.len() {
                // One line longer than the block: grow it.
                block.resize(block.len() * 2, 0);
            }
            let n = loop {
                match input.read(&mut block[filled..]) {
                    Ok(n) => break n,
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                }
            };
            filled += n;
            ended = n == 0;
            // Whole lines only, unless the input ended: then the rest is the last line
            // (a final `\n` leaves nothing after it).
            let whole = if ended {
                filled
            } else {
                match block[..filled].iter().rposition(|&b| b == b'\n') {
                    Some(nl) => nl + 1,
                    None => continue,
                }
            };
            if let Some(ready) = ready.take() {
                first_ready.store(true, std::sync::atomic::Ordering::Relaxed);
                // The first block goes to the early helper: it keeps its bytes, and
                // reading goes on in a new block (zeroed lazily by the allocator).
                let mut next = vec![0; block.len()];
                next[..filled - whole].copy_from_slice(&block[whole..filled]);
                filled -= whole;
                block.truncate(whole);
                let bytes = std::mem::replace(&mut block, next);
                let text = String::from_utf8(bytes)
                    .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
                let text = first_text.get_or_init(|| text);
                let lines = first_lines.get_or_init(|| split_lines(text));
                let min = helper_min_lines.unwrap_or(usize::MAX);
                let started = std::time::Instant::now();
                if lines.len() >= min {
                    let shared = first_block.get_or_init(|| SharedBlock::new(lines));
                    // A helper that has gone costs nothing: this thread tokenises all.
                    let _ = ready.send(());
                    shared.place(&mut drain, &mut assigned);
                } else {
                    drop(ready);
                    mine_lines(&mut drain, lines, false, &mut assigned);
                }
                parse += started.elapsed();
                continue;
            }
            let chunk = &block[..whole];
            let text = match std::str::from_utf8(chunk) {
                Ok(text) => std::borrow::Cow::Borrowed(text),
                // Per block, as per line: a newline never belongs to an invalid sequence.
                Err(_) => String::from_utf8_lossy(chunk),
            };
            let lines = split_lines(&text);
            let helper = helper_min_lines.is_some_and(|min| lines.len() >= min);
            // Mining only, as drain3 is timed (around `add_log_message` over lines
            // already decoded and split).
            let started = std::time::Instant::now();
            mine_lines(&mut drain, &lines, helper, &mut assigned);
            parse += started.elapsed();
            block.copy_within(whole..filled, 0);
            filled -= whole;
        }
        Ok(())
    })?;
    // Per assigned id: the range of its `id\ttemplate\n` line in `table`.
    let mut spans: Vec<Option<(usize, usize)>> = vec![None; drain.groups.len()];
    let mut table: Vec<u8> = Vec::new();
    let mut groups = std::collections::HashSet::new();
    let mut buf: Vec<u8> = Vec::with_capacity(block_bytes);
    for &g in &assigned {
        let Some(slot) = spans.get_mut(g as usize) else {
            continue;
        };
        let (a, b) = match *slot {
            Some(span) => span,
            None => {
                let id = drain.resolve(g as usize);
                groups.insert(id);
                let a = table.len();
                table.extend_from_slice(id.to_string().as_bytes());
                table.push(b'\t');
                table.extend_from_slice(drain.template(id).as_bytes());
                table.push(b'\n');
                *slot = Some((a, table.len()));
                (a, table.len())
            }
        };
        buf.extend_from_slice(&table[a..b]);
        if buf.len() >= block_bytes {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(TemplatesRun {
        lines: assigned.len(),
        groups: groups.len(),
        parse_seconds: parse.as_secs_f64(),
    })
}

/// Lines of one block from which a second thread pays when a core is free: starting one
/// takes 0.05 to 0.2 ms, while 1,000 lines are mined in about 0.5 ms (2,000-line files
/// were mined 1.37 times as fast with it on an idle 2-core machine).
const PARALLEL_MIN_LINES: usize = 1_000;

/// The same when no core looks free: the helper may wait long for one (up to 4 ms was
/// seen), which only a large block hides. This thread never waits for it either way.
const BUSY_PARALLEL_MIN_LINES: usize = 50_000;

/// Lines a helper thread tokenises at a time, at most.
const CHUNK_LINES: usize = 128;

/// Lines of the smallest chunks, the last ones of a block.
const MIN_CHUNK_LINES: usize = 16;

/// The lines of a block cut in chunks for two threads to tokenise: `CHUNK_LINES` long
/// until the last few, which shrink (an eighth of the lines left) down to
/// `MIN_CHUNK_LINES`, so that neither thread ends long after the other, and a chunk the
/// placing thread tokenises again rather than wait for the helper is short.
fn chunk_lines<'a>(lines: &'a [&'a str]) -> Vec<&'a [&'a str]> {
    let mut chunks = Vec::with_capacity(lines.len() / CHUNK_LINES + 32);
    let mut rest = lines;
    while !rest.is_empty() {
        let n = (rest.len() / 8)
            .clamp(MIN_CHUNK_LINES, CHUNK_LINES)
            .min(rest.len());
        let (chunk, after) = rest.split_at(n);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

/// Mines `lines` in order, pushing each line's group id. Tokenising is most of the work
/// and needs no shared state, so a helper thread tokenises chunks of lines ahead of this
/// one, which places every line in order (the groups are the ones a single thread gives).
/// This thread never waits for the helper: a chunk the helper has not finished is
/// tokenised here, so a busy machine that leaves the helper no core costs little.
fn mine_lines(drain: &mut Drain, lines: &[&str], helper_thread: bool, assigned: &mut Vec<u32>) {
    if !helper_thread || !drain.parallel() {
        assigned.extend(lines.iter().map(|line| drain.add(line) as u32));
        return;
    }
    let block = SharedBlock::new(lines);
    let mut tokenizer = drain.tokenizer();
    std::thread::scope(|scope| {
        let block = &block;
        // If no thread can be started, every chunk is simply tokenised here.
        let _helper = std::thread::Builder::new()
            .name("drain-tokenize".into())
            .spawn_scoped(scope, move || block.help(&mut tokenizer));
        block.place(drain, assigned);
    });
}

/// The lines of one block, cut in chunks that a helper thread tokenises ahead of the
/// thread placing them (see `mine_lines`).
struct SharedBlock<'a> {
    chunks: Vec<&'a [&'a str]>,
    /// Each chunk's tokens once tokenised (taken by the placing thread).
    done: Vec<Mutex<Option<TokenizedLines>>>,
    /// Results already placed, for the next chunks to reuse.
    spare: Mutex<Vec<TokenizedLines>>,
    /// The next chunk nobody has claimed; the helper claims from it, and so does the
    /// placing thread when it reaches a chunk first.
    next: std::sync::atomic::AtomicUsize,
    stop: std::sync::atomic::AtomicBool,
}

/// A lock whose holder panicked still guards plain data: take it anyway.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<'a> SharedBlock<'a> {
    fn new(lines: &'a [&'a str]) -> Self {
        let chunks = chunk_lines(lines);
        let done = chunks.iter().map(|_| Mutex::new(None)).collect();
        SharedBlock {
            chunks,
            done,
            spare: Mutex::new(Vec::new()),
            next: std::sync::atomic::AtomicUsize::new(0),
            stop: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Tokenises chunk `c` into a spare result and files it.
    fn tokenize_chunk(&self, c: usize, tokenizer: &mut Tokenizer) {
        let (Some(chunk), Some(slot)) = (self.chunks.get(c), self.done.get(c)) else {
            return;
        };
        let mut out = match tokenizer.spare.pop() {
            Some(out) => out,
            None => lock(&self.spare).pop().unwrap_or_default(),
        };
        tokenizer.tokenize_into(chunk, &mut out);
        *lock(slot) = Some(out);
    }

    /// The helper's side: tokenise unclaimed chunks until none is left or placing ended.
    fn help(&self, tokenizer: &mut Tokenizer) {
        use std::sync::atomic::Ordering;
        while !self.stop.load(Ordering::Relaxed) {
            let c = self.next.fetch_add(1, Ordering::AcqRel);
            if c >= self.chunks.len() {
                break;
            }
            self.tokenize_chunk(c, tokenizer);
        }
    }

    /// The placing side: every line in order, pushing its group id.
    fn place(&self, drain: &mut Drain, assigned: &mut Vec<u32>) {
        use std::sync::atomic::Ordering;
        let mut tokenizer = drain.tokenizer();
        for (c, chunk) in self.chunks.iter().enumerate() {
            loop {
                let tokenized = lock(&self.done[c]).take();
                if let Some(tokenized) = tokenized {
                    for (i, line) in chunk.iter().enumerate() {
                        let (hashes, keyed) = tokenized.line(i);
                        assigned.push(drain.add_tokenized(line, hashes, keyed) as u32);
                    }
                    lock(&self.spare).push(tokenized);
                    break;
                }
                // Nobody has claimed this chunk: take it and tokenise while placing.
                if self
                    .next
                    .compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    assigned.extend(chunk.iter().map(|line| drain.add(line) as u32));
                    break;
                }
                // The helper is on it: tokenise a later chunk meanwhile.
                let k = self.next.fetch_add(1, Ordering::AcqRel);
                if k < self.chunks.len() {
                    self.tokenize_chunk(k, &mut tokenizer);
                } else {
                    // Nothing left to claim and the helper not done (or descheduled):
                    // tokenise this one again here rather than wait.
                    assigned.extend(chunk.iter().map(|line| drain.add(line) as u32));
                    break;
                }
            }
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Mines `lines` with only ids and templates wanted; returns the miner and each line's
/// group id as assigned (resolve it for the final group).
fn assign_lines<S: AsRef<str>>(
    lines: impl Iterator<Item = S>,
    config: &DrainConfig,
) -> (Drain, Vec<u32>) {
    let mut config = config.clone();
    // Only ids and templates are wanted: skip the per-line bookkeeping.
    config.track_parameters = false;
    config.max_examples = 0;
    let mut drain = Drain::new(config);
    let assigned = lines.map(|line| drain.add(line.as_ref()) as u32).collect();
    (drain, assigned)
}

/// Share of the positions that tell something where the line matches the template, and
/// the template's parameters there. Tell nothing: the tree keys (equal by construction,
/// and in whole raw lines mostly the header's constants), log levels, bare `<*>` against
/// bare `<*>` or against a token holding a parameter (`tbird-<*>`). Equal tokens match
/// (`ntpd[<*>]:` too); a template `<*>` against a constant counts against, as in Drain,
/// so that templates full of `<*>` do not attract every line.
fn similarity(template: &[u64], line: &[u64], skip: &[bool]) -> (f64, usize) {
    let wild = wildcard_hash();
    let mut matched = 0usize;
    let mut neutral = 0usize;
    let mut params = 0usize;
    for ((&t, &l), &skip) in template.iter().zip(line).zip(skip) {
        if skip || (t | l) & LEVEL_BIT != 0 {
            neutral += 1;
        } else if t == l {
            if t == wild {
                neutral += 1;
            } else {
                matched += 1;
            }
        } else if (t == wild && l & VAR_BIT != 0) || (l == wild && t & VAR_BIT != 0) {
            neutral += 1;
        } else if t == wild {
            params += 1;
        }
    }
    let considered = template.len() - neutral;
    if considered == 0 {
        return (1.0, params);
    }
    (matched as f64 / considered as f64, params)
}

/// Best so far: higher similarity, then more parameters (the more general template).
fn better(best: Option<(f64, usize, u32)>, sim: f64, params: usize) -> bool {
    match best {
        None => true,
        Some((s, p, _)) => sim > s || (sim == s && params > p),
    }
}

// ---------------------------------------------------------------------------------------
// Tokenising and masking

/// What a token turned out to be after masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// No digit, nothing masked: may key the tree.
    Plain,
    /// A log level: header, neither matches nor differs.
    Level,
    /// Held digits but kept as a word (`log4j`): constant, not a key.
    Word,
    /// Holds a `<*>`.
    Param,
}

impl Kind {
    fn hash(self, text: &[u8]) -> u64 {
        let h = hash_bytes(text) & !(VAR_BIT | LEVEL_BIT);
        match self {
            Kind::Plain | Kind::Word => h,
            Kind::Level => h | LEVEL_BIT,
            Kind::Param => h | VAR_BIT,
        }
    }
}

// Byte classes, OR-ed over a token while finding its end, so that most tokens are
// classified without another pass.
const C_DIGIT: u8 = 1;
/// Letters, and non-ASCII bytes (parts of letters as far as masking goes).
const C_ALPHA: u8 = 2;
const C_SLASH: u8 = 4;
const C_AT: u8 = 8;
const C_COLON: u8 = 16;
const C_QUOTE: u8 = 32;
/// Joiners other than `:` and `/` (see `is_joiner`).
const C_JOIN: u8 = 64;
/// Other punctuation and control bytes.
const C_OTHER: u8 = 128;

const CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_digit() {
            C_DIGIT
        } else if c.is_ascii_alphabetic() || c >= 0x80 {
            C_ALPHA
        } else if c == b'/' || c == b'\\' {
            C_SLASH
        } else if c == b'@' {
            C_AT
        } else if c == b':' {
            C_COLON
        } else if c == b'"' || c == b'\'' {
            C_QUOTE
        } else if matches!(c, b'.' | b'-' | b'_' | b',' | b'+' | b'#') {
            C_JOIN
        } else {
            C_OTHER
        };
        b += 1;
    }
    t
};

fn tokenize(
    config: &DrainConfig,
    key_layers: usize,
    classes: &[u8; 256],
    source: &str,
    line: &mut Line,
) {
    line.tokens.clear();
    line.masked.clear();
    line.hashes.clear();
    line.keys.clear();
    line.scratch.last = None;
    let bytes = source.as_bytes();
    let max_tokens = config.max_tokens.max(1);
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && classes[usize::from(bytes[i])] == 0 {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        if line.tokens.len() + 1 == max_tokens {
            // The rest of an over-long line is one parameter.
            let mut end = bytes.len();
            while end > start && classes[usize::from(bytes[end - 1])] == 0 {
                end -= 1;
            }
            push_wild(line, start, end);
            break;
        }
        let group = group_end(bytes, start, classes);
        let mut end = start;
        let mut seen = 0u8;
        match group {
            Some(group_end) => end = group_end,
            None => {
                while let Some(&b) = bytes.get(end) {
                    let class = classes[usize::from(b)];
                    if class == 0 {
                        break;
                    }
                    seen |= class;
                    end += 1;
                }
            }
        }
        i = end;
        if end - start > config.max_token_bytes {
            push_wild(line, start, end);
            continue;
        }
        if group.is_some() {
            let token = mask_group(bytes, start, end, config.mask_quoted, classes, line);
            line.tokens.push(token);
        } else if seen & (NOT_WORD | C_QUOTE) == 0 && end - start <= WORD_MAX_BYTES {
            // Most tokens: words, kept as they are (`mask_token`'s first case, inline).
            let raw = (start as u32, end as u32);
            line.tokens.push(Token {
                raw,
                text: raw,
                in_masked: false,
                kind: Kind::Plain,
            });
        } else if is_number(seen) {
            // Then numbers, times, dates, IPs (`mask_token`'s second case, inline).
            let token = mask_number(bytes, start, end, &mut line.masked);
            line.tokens.push(token);
        } else {
            let out = &mut line.masked;
            mask_token(
                bytes,
                start,
                end,
                seen,
                config.mask_quoted,
                out,
                &mut line.scratch,
                &mut line.tokens,
            );
        }
    }
    mask_dates(bytes, &mut line.tokens, &mut line.masked);
    line.skip.clear();
    for t in line.tokens.iter_mut() {
        let text = t.text(bytes, &line.masked);
        if t.kind == Kind::Plain && is_level(text) {
            t.kind = Kind::Level;
        }
        let hash = t.kind.hash(text);
        line.hashes.push(hash);
        // Bracketed words (`[main]`, thread names) vary within one event: not keys.
        let key =
            t.kind == Kind::Plain && text.first() != Some(&b'[') && line.keys.len() < key_layers;
        if key {
            line.keys.push(hash);
        }
        line.skip.push(key);
    }
}

/// Bytes a bracketed group may span.
const MAX_GROUP_BYTES: usize = 256;

/// A `[...]` holding whitespace is one token (`[IPC Server handler 19 on 62270]`), so that
/// thread names and bracketed lists do not change the token count; returns its end.
fn group_end(bytes: &[u8], start: usize, classes: &[u8; 256]) -> Option<usize> {
    if bytes[start] != b'[' {
        return None;
    }
    let mut depth = 0usize;
    let mut spaced = false;
    let limit = bytes.len().min(start + MAX_GROUP_BYTES);
    for j in start..limit {
        match bytes[j] {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    if !spaced {
                        return None;
                    }
                    let mut end = j + 1;
                    while end < bytes.len() && classes[usize::from(bytes[end])] != 0 {
                        end += 1;
                    }
                    return Some(end);
                }
            }
            b => spaced |= classes[usize::from(b)] == 0,
        }
    }
    None
}

/// Masks the parts of a bracketed group one by one, joined by single spaces, with runs
/// of `<*>` parts collapsed (`[TERM, HUP, INT]` stays, `[10.30 16:49:06]` gives `[<*>]`).
fn mask_group(
    bytes: &[u8],
    start: usize,
    end: usize,
    mask_quoted: bool,
    classes: &[u8; 256],
    line: &mut Line,
) -> Token {
    let mut parts = std::mem::take(&mut line.parts);
    let mut tokens = std::mem::take(&mut line.part_tokens);
    parts.clear();
    tokens.clear();
    // The parts' texts go to `parts`: the line's last slow token (in `masked`) is put
    // aside meanwhile.
    let outer = line.scratch.last.take();
    let mut i = start;
    while i < end {
        while i < end && classes[usize::from(bytes[i])] == 0 {
            i += 1;
        }
        let part = i;
        let mut seen = 0u8;
        while i < end && classes[usize::from(bytes[i])] != 0 {
            seen |= classes[usize::from(bytes[i])];
            i += 1;
        }
        if part == i {
            break;
        }
        mask_token(
            bytes,
            part,
            i,
            seen,
            mask_quoted,
            &mut parts,
            &mut line.scratch,
            &mut tokens,
        );
    }
    line.scratch.last = outer;
    mask_dates(bytes, &mut tokens, &mut parts);
    let out_start = line.masked.len();
    let mut kind = Kind::Plain;
    for (k, t) in tokens.iter().enumerate() {
        let text = t.text(bytes, &parts);
        let out = &mut line.masked;
        if k > 0 && out.ends_with(WILDCARD.as_bytes()) && text.starts_with(WILDCARD.as_bytes()) {
            // `[<*>` `<*>` `<*>]` -> `[<*>]`.
            out.extend_from_slice(&text[WILDCARD.len()..]);
        } else {
            if k > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(text);
        }
        // A group holding a parameter is a parameter; one of plain words may key the tree.
        kind = match t.kind {
            Kind::Param => Kind::Param,
            Kind::Word | Kind::Level if kind != Kind::Param => Kind::Word,
            Kind::Word | Kind::Level | Kind::Plain => kind,
        };
    }
    line.parts = parts;
    line.part_tokens = tokens;
    Token {
        raw: (start as u32, end as u32),
        text: (out_start as u32, line.masked.len() as u32),
        in_masked: true,
        kind,
    }
}

fn push_wild(line: &mut Line, start: usize, end: usize) {
    let out_start = line.masked.len();
    line.masked.extend_from_slice(WILDCARD.as_bytes());
    line.tokens.push(Token {
        raw: (start as u32, end as u32),
        text: (out_start as u32, line.masked.len() as u32),
        in_masked: true,
        kind: Kind::Param,
    });
}

/// Month and weekday names right before a masked number are part of a date
/// (`Jun 3 15:42:50`, `[Sun Dec 04 04:47:44 2005]`).
/// Month names, then day names, as words (`pack_words`): one integer compare each.
const DATE_NAMES: [u64; 19] = pack_words(&[
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun",
]);

/// The months among `DATE_NAMES`.
const MONTHS: usize = 12;

/// A syslog header's host is masked too (`mask_syslog_host`).
fn mask_dates(source: &[u8], tokens: &mut [Token], masked: &mut Vec<u8>) {
    let mut first_name = None;
    for k in (0..tokens.len().saturating_sub(1)).rev() {
        let t = tokens[k];
        let len = t.text.1 - t.text.0;
        if t.kind != Kind::Plain || !(3..=5).contains(&len) || tokens[k + 1].kind != Kind::Param {
            continue;
        }
        // Names start with a capital, maybe after an opening bracket or quote.
        let first = t.text(source, masked).first().copied().unwrap_or(0);
        if !matches!(
            first,
            b'A'..=b'Z' | b'(' | b'[' | b'{' | b'<' | b'"' | b'\''
        ) {
            continue;
        }
        // The next token starts with a masked number (`3`, `04:47:44`, `[10.30`).
        let next = tokens[k + 1].text(source, masked);
        let skip = next
            .iter()
            .take_while(|&&b| matches!(b, b'(' | b'[' | b'{' | b'"' | b'\''))
            .count();
        if !next[skip..].starts_with(WILDCARD.as_bytes()) {
            continue;
        }
        let (lead, core, trail) = strip_wrapping(t.text(source, masked));
        if core.len() == 3 && DATE_NAMES.contains(&pack_word(core)) {
            let (lead, trail) = (lead.len(), trail.len());
            let raw = t.raw(source);
            tokens[k].make_wild(masked, &raw[..lead], &raw[raw.len() - trail..]);
            first_name = Some(k);
        }
    }
    if let Some(k) = first_name {
        mask_syslog_host(source, tokens, masked, k);
    }
}

/// The host of a syslog header (`Jul  1 09:04:33 web-a sshd[812]: …`) is a parameter:
/// lines from several hosts are one event. `k`: the first date name `mask_dates` masked;
/// a month among the first 8 tokens, then a day and a time, then the host, masked where
/// it is a plain word (a name with digits is masked already), then a tag ending in `:`.
#[inline(never)] // rare; inlined, it slowed the per-line code by 2 to 8%
fn mask_syslog_host(source: &[u8], tokens: &mut [Token], masked: &mut Vec<u8>, k: usize) {
    if k >= 8 {
        return;
    }
    let (Some(month), Some(day), Some(time), Some(&host), Some(tag)) = (
        tokens.get(k),
        tokens.get(k + 1),
        tokens.get(k + 2),
        tokens.get(k + 3),
        tokens.get(k + 4),
    ) else {
        return;
    };
    // Most hosts hold digits and are masked already.
    if host.kind != Kind::Plain {
        return;
    }
    if !DATE_NAMES[..MONTHS].contains(&pack_word(month.raw(source))) {
        return;
    }
    let (day, time) = (day.raw(source), time.raw(source));
    let is_time = time.len() >= 8
        && time[..8].iter().enumerate().all(|(i, &b)| {
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    if !(1..=2).contains(&day.len()) || !day.iter().all(u8::is_ascii_digit) || !is_time {
        return;
    }
    let tag = tag.text(source, masked);
    // Upper case alone is a level (`INFO`), not a host.
    let host_text = host.text(source, masked);
    if host_text.iter().all(u8::is_ascii_uppercase) || tag.len() < 2 || !tag.ends_with(b":") {
        return;
    }
    tokens[k + 3].make_wild(masked, b"", b"");
}

/// `INFO`, `WARN`, `[error]`, `<notice>`: upper case alone, any case when bracketed.
fn is_level(token: &[u8]) -> bool {
    const LEVELS: [&[u8]; 15] = [
        b"TRACE",
        b"DEBUG",
        b"INFO",
        b"NOTICE",
        b"WARN",
        b"WARNING",
        b"ERROR",
        b"ERR",
        b"SEVERE",
        b"CRIT",
        b"CRITICAL",
        b"ALERT",
        b"EMERG",
        b"FATAL",
        b"PANIC",
    ];
    // The names packed in words (at most 8 bytes), so that a token is looked up with
    // 15 integer compares: this runs on every plain token.
    const PACKED: [u64; 15] = pack_words(&LEVELS);
    let len = token.len();
    if !(3..=10).contains(&len) {
        return false;
    }
    let (word, core_len) = match token[0] {
        // Unbracketed: exactly an upper-case name.
        b'A'..=b'Z' if len <= 8 => (pack_word(token), len),
        // Bracketed: any case. `& 0xDF` upper-cases ASCII letters and maps no other byte
        // to one, so a core holding anything but letters matches no name.
        b'[' | b'<' | b'(' if len >= 5 => {
            if !matches!(
                token[len - 1],
                b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.'
            ) {
                return false;
            }
            let core = &token[1..len - 1];
            (pack_word(core) & 0xDFDF_DFDF_DFDF_DFDF, core.len())
        }
        _ => return false,
    };
    PACKED
        .iter()
        .zip(LEVELS)
        .any(|(&w, level)| w == word && level.len() == core_len)
}

/// Each word packed (see `pack_word`), for lookups by integer compares.
const fn pack_words<const N: usize>(words: &[&[u8]; N]) -> [u64; N] {
    let mut packed = [0u64; N];
    let mut i = 0;
    while i < N {
        packed[i] = pack_word(words[i]);
        i += 1;
    }
    packed
}

/// Up to the first 8 bytes, little-endian in a word (zero past the end).
const fn pack_word(bytes: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < bytes.len() && i < 8 {
        w |= (bytes[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

fn is_alnum(b: u8) -> bool {
    CLASSES[usize::from(b)] & (C_DIGIT | C_ALPHA) != 0
}

/// Punctuation that joins the parts of one value (`10.0.0.1:80`, `2005-06-03-15.42.50`).
fn is_joiner(b: u8) -> bool {
    matches!(b, b'.' | b':' | b'-' | b'/' | b'_' | b',' | b'+' | b'#')
}

/// Masks `source[start..end]` (its byte classes OR-ed in `classes`), writing to `out` only
/// what differs from the raw token. Tokens other than words and numbers are looked up
/// in (and added to) the scratch's cache first.
#[allow(clippy::too_many_arguments)]
fn mask_token(
    source: &[u8],
    start: usize,
    end: usize,
    classes: u8,
    mask_quoted: bool,
    out: &mut Vec<u8>,
    scratch: &mut MaskScratch,
    tokens: &mut Vec<Token>,
) {
    let token = &source[start..end];
    let raw = (start as u32, end as u32);
    // The same token again in this line (a node or host named twice): its result.
    if let Some(last) = scratch.last {
        let (a, b) = last.raw;
        if source.get(a as usize..b as usize) == Some(token) {
            let text = if last.in_masked {
                let at = out.len();
                out.extend_from_within(last.text.0 as usize..last.text.1 as usize);
                (at as u32, out.len() as u32)
            } else {
                raw
            };
            tokens.push(Token { raw, text, ..last });
            return;
        }
    }
    let cacheable = !is_word(classes, token.len())
        && !is_number(classes)
        && token.len() <= MaskCache::MAX_TOKEN;
    let hash = if cacheable { hash_bytes(token) } else { 0 };
    if cacheable {
        if let Some((text, in_masked, kind)) = scratch.cache.get(token, hash) {
            let text = if in_masked {
                let at = out.len();
                out.extend_from_slice(text);
                (at as u32, out.len() as u32)
            } else {
                raw
            };
            tokens.push(Token {
                raw,
                text,
                in_masked,
                kind,
            });
            return;
        }
    }
    // Built in place: returning the token by value and pushing it made a store-forwarding
    // stall per token.
    let t = mask_token_inner(
        source,
        start,
        end,
        classes,
        mask_quoted,
        out,
        &mut scratch.runs,
    );
    if cacheable && scratch.cache.seen_before(hash) {
        scratch
            .cache
            .put(token, hash, t.text(source, out), t.in_masked, t.kind);
    }
    scratch.last = Some(t);
    tokens.push(t);
}

/// Scratch space of `mask_token`.
#[derive(Debug, Default)]
struct MaskScratch {
    runs: Vec<Run>,
    cache: MaskCache,
    /// The last token of the current line that took the slow path (its text, when
    /// masked, is in the line's `masked`); `None` at the start of each line.
    last: Option<Token>,
}

/// Masking results of recent tokens that took the slow path (`mask_token_inner`): the
/// same host names, node ids, paths and class names come back line after line, while
/// block and request ids never do. Direct-mapped; a token is stored the second time its
/// slot sees it (the first time only its hash is kept, so unique ids cost little);
/// bounded in slots and bytes (full: emptied).
#[derive(Debug, Default)]
struct MaskCache {
    slots: Vec<CacheSlot>,
    /// Raw and masked texts of the slots.
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct CacheSlot {
    hash: u64,
    raw: (u32, u32),
    text: (u32, u32),
    in_masked: bool,
    /// `None`: only the hash was seen.
    kind: Option<Kind>,
}

impl CacheSlot {
    const EMPTY: CacheSlot = CacheSlot {
        hash: 0,
        raw: (0, 0),
        text: (0, 0),
        in_masked: false,
        kind: None,
    };
}

impl MaskCache {
    const SLOTS: usize = 1024;
    const MAX_BYTES: usize = 1 << 16;
    const MAX_TOKEN: usize = 128;

    fn slot(hash: u64) -> usize {
        (hash >> 17) as usize & (Self::SLOTS - 1)
    }

    /// `hash`: `hash_bytes(token)`.
    fn get(&self, token: &[u8], hash: u64) -> Option<(&[u8], bool, Kind)> {
        let slot = self.slots.get(Self::slot(hash))?;
        let kind = slot.kind?;
        let raw = self.bytes.get(slot.raw.0 as usize..slot.raw.1 as usize)?;
        if slot.hash != hash || raw != token {
            return None;
        }
        let text = self.bytes.get(slot.text.0 as usize..slot.text.1 as usize)?;
        Some((text, slot.in_masked, kind))
    }

    /// After a miss: whether the token's slot saw its hash before (then it is worth
    /// storing); if not, the slot now remembers the hash.
    /// Allocates and touches the slots and the text buffer (see `Tokenizer::warm_up`).
    fn warm_up(&mut self) {
        self.slots.clear();
        self.slots.resize(Self::SLOTS, CacheSlot::EMPTY);
        // Room for all, touched for the first quarter (more than a short input fills).
        self.bytes.clear();
        self.bytes.reserve_exact(Self::MAX_BYTES);
        touched(&mut self.bytes, Self::MAX_BYTES / 4, 0);
    }

    fn seen_before(&mut self, hash: u64) -> bool {
        if self.slots.is_empty() {
            self.slots.resize(Self::SLOTS, CacheSlot::EMPTY);
        }
        let slot = &mut self.slots[Self::slot(hash)];
        if slot.hash == hash {
            return true;
        }
        *slot = CacheSlot {
            hash,
            ..CacheSlot::EMPTY
        };
        false
    }

    fn put(&mut self, token: &[u8], hash: u64, text: &[u8], in_masked: bool, kind: Kind) {
        if self.slots.is_empty() || self.bytes.len() + token.len() + text.len() > Self::MAX_BYTES {
            self.slots.clear();
            self.slots.resize(Self::SLOTS, CacheSlot::EMPTY);
            self.bytes.clear();
        }
        let at = self.bytes.len();
        self.bytes.extend_from_slice(token);
        let mid = self.bytes.len();
        if in_masked {
            self.bytes.extend_from_slice(text);
        }
        self.slots[Self::slot(hash)] = CacheSlot {
            hash,
            raw: (at as u32, mid as u32),
            text: (mid as u32, self.bytes.len() as u32),
            in_masked,
            kind: Some(kind),
        };
    }
}

#[inline(always)]
fn mask_token_inner(
    source: &[u8],
    start: usize,
    end: usize,
    classes: u8,
    mask_quoted: bool,
    out: &mut Vec<u8>,
    runs: &mut Vec<Run>,
) -> Token {
    let token = &source[start..end];
    let raw = (start as u32, end as u32);
    let verbatim = |kind| Token {
        raw,
        text: raw,
        in_masked: false,
        kind,
    };
    let quoted = mask_quoted && classes & C_QUOTE != 0 && is_quoted(token);
    if is_word(classes, token.len()) && !quoted {
        // Most tokens: words.
        return verbatim(Kind::Plain);
    }
    let out_start = out.len();
    let masked = |out: &Vec<u8>| Token {
        raw,
        text: (out_start as u32, out.len() as u32),
        in_masked: true,
        kind: Kind::Param,
    };
    if is_number(classes) {
        return mask_number(source, start, end, out);
    }
    // A token masked whole needs a quote, `/`, `@` or `:`, or 36 bytes (a UUID).
    let may_be_whole =
        quoted || classes & (C_SLASH | C_AT | C_COLON) != 0 || token.len() > WORD_MAX_BYTES;
    if may_be_whole {
        let (lead, core, trail) = strip_wrapping(token);
        let whole = quoted
            || (classes & C_SLASH != 0 && is_path(core))
            || (classes & C_AT != 0 && is_email(core))
            || is_uuid(core)
            || (classes & (C_DIGIT | C_COLON) == (C_DIGIT | C_COLON) && is_host_port(core));
        if whole {
            put(out, lead);
            put(out, WILDCARD.as_bytes());
            put(out, trail);
            return masked(out);
        }
    }
    if classes & C_DIGIT == 0 {
        return verbatim(Kind::Plain);
    }
    if mask_runs(token, out, runs) {
        masked(out)
    } else {
        out.truncate(out_start);
        verbatim(Kind::Word)
    }
}

/// Byte classes that keep a token from being a plain word.
const NOT_WORD: u8 = C_DIGIT | C_SLASH | C_AT;

/// Words this long or longer are checked further (a UUID has 36 bytes).
const WORD_MAX_BYTES: usize = 35;

/// A token of these byte classes and length is a word kept as it is (unless quoted
/// and quoted strings are masked): no digit, `/` or `@`, and short.
#[inline(always)]
const fn is_word(classes: u8, len: usize) -> bool {
    classes & NOT_WORD == 0 && len <= WORD_MAX_BYTES
}

/// A token of these byte classes is a number, time, date or IP: digits, joiners and `:`.
#[inline(always)]
const fn is_number(classes: u8) -> bool {
    classes & C_DIGIT != 0 && classes & !(C_DIGIT | C_JOIN | C_COLON) == 0
}

/// Numbers, times, dates, IPs (digits, joiners and `:` only): `2005-06-03-15.42.50.675872`,
/// `10.251.73.220:50010,` → one `<*>` from the first digit (or its sign) to the last.
#[inline(always)]
fn mask_number(source: &[u8], start: usize, end: usize, out: &mut Vec<u8>) -> Token {
    let token = &source[start..end];
    let first = token.iter().position(u8::is_ascii_digit).unwrap_or(0);
    let last = token.iter().rposition(u8::is_ascii_digit).unwrap_or(0);
    // A sign belongs to the number (`blk_-69` is handled the same in `mask_runs`).
    let lead = if first > 0 && matches!(token[first - 1], b'-' | b'+') {
        first - 1
    } else {
        first
    };
    let out_start = out.len();
    put(out, &token[..lead]);
    put(out, WILDCARD.as_bytes());
    put(out, token.get(last + 1..).unwrap_or_default());
    Token {
        raw: (start as u32, end as u32),
        text: (out_start as u32, out.len() as u32),
        in_masked: true,
        kind: Kind::Param,
    }
}

/// Appends a slice; masked tokens are built from many tiny pieces (often empty), where
/// a `memcpy` call per piece cost more than the copying.
#[inline(always)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() <= 8 {
        for &b in bytes {
            out.push(b);
        }
    } else {
        out.extend_from_slice(bytes);
    }
}

/// Splits off leading `([{<"'` and trailing `)]}>"',;:.` so that `(/a/b)` is a path.
fn strip_wrapping(token: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let mut a = 0;
    while a < token.len() && matches!(token[a], b'(' | b'[' | b'{' | b'<' | b'"' | b'\'') {
        a += 1;
    }
    let mut b = token.len();
    while b > a
        && matches!(
            token[b - 1],
            b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.'
        )
    {
        b -= 1;
    }
    (&token[..a], &token[a..b], &token[b..])
}

/// Masks each alphanumeric run holding a digit; consecutive masked runs joined only by
/// joiners collapse into one `<*>`. Returns whether anything was masked.
fn mask_runs(token: &[u8], out: &mut Vec<u8>, runs: &mut Vec<Run>) -> bool {
    runs.clear();
    let mut i = 0;
    let mut digit_runs = 0;
    while i < token.len() {
        if !is_alnum(token[i]) {
            i += 1;
            continue;
        }
        let mut start = i;
        let mut classes = 0u8;
        while let Some(&b) = token.get(i) {
            let class = CLASSES[usize::from(b)];
            if class & (C_DIGIT | C_ALPHA) == 0 {
                break;
            }
            classes |= class;
            i += 1;
        }
        let digits = classes & C_DIGIT != 0;
        // A sign before a number that follows punctuation belongs to the number.
        if digits
            && start > 0
            && matches!(token[start - 1], b'-' | b'+')
            && (start == 1 || !is_alnum(token[start - 2]))
        {
            start -= 1;
        }
        let variable = digits && !is_word_with_digit(&token[start..i]);
        digit_runs += usize::from(digits);
        runs.push(Run {
            start,
            end: i,
            digits,
            variable,
        });
    }
    emit_runs(token, out, runs, digit_runs)
}

/// Marks the id-like runs among numbers and writes the masked token (see `mask_runs`).
fn emit_runs(token: &[u8], out: &mut Vec<u8>, runs: &mut [Run], digit_runs: usize) -> bool {
    if digit_runs >= 2 {
        // Node, attempt and request names: `R02-M1-N0-C:J12-U11`, `attempt_14_0020_m_000002_0`,
        // `req-9bc3-bfbb-4a0e`: short letter runs and hex runs among numbers are ids too.
        for r in runs.iter_mut() {
            let run = &token[r.start..r.end];
            if !r.digits
                && ((run.len() <= 2 && run.iter().all(u8::is_ascii_alphabetic))
                    || run.iter().all(|b| matches!(b, b'a'..=b'f' | b'A'..=b'F')))
            {
                r.variable = true;
            }
        }
    }
    let mut pos = 0;
    // `out.len()` right after the last `<*>` written, while nothing followed it.
    let mut after_wild: Option<usize> = None;
    for r in runs.iter() {
        let gap = &token[pos..r.start];
        if r.variable {
            let joins = after_wild == Some(out.len()) && gap.iter().all(|&b| is_joiner(b));
            if !joins {
                put(out, gap);
                put(out, WILDCARD.as_bytes());
            }
            after_wild = Some(out.len());
        } else {
            put(out, gap);
            put(out, &token[r.start..r.end]);
        }
        pos = r.end;
    }
    put(out, &token[pos..]);
    after_wild.is_some()
}

/// `log4j`, `i18n`, `k8s`: one short digit run inside letters is part of a word.
fn is_word_with_digit(run: &[u8]) -> bool {
    // Letters on both ends, or not a word (most digit runs end in a digit: `R02`, `x86`).
    match (run.first(), run.last()) {
        (Some(a), Some(z)) if a.is_ascii_alphabetic() && z.is_ascii_alphabetic() => {}
        _ => return false,
    }
    let first_digit = run.iter().position(u8::is_ascii_digit);
    let last_digit = run.iter().rposition(u8::is_ascii_digit);
    match (first_digit, last_digit) {
        (Some(f), Some(l)) => {
            f >= 1
                && l + 1 < run.len()
                && l - f < 2
                && run[..f].iter().all(u8::is_ascii_alphabetic)
                && run[l + 1..].iter().all(u8::is_ascii_alphabetic)
                && run[f..=l].iter().all(u8::is_ascii_digit)
                && !run.iter().all(u8::is_ascii_hexdigit)
        }
        _ => false,
    }
}

fn is_uuid(core: &[u8]) -> bool {
    // 8-4-4-4-12 hex digits.
    core.len() == 36
        && core.iter().enumerate().all(|(i, &b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// `/a/b`, `scheme://x/y`, `C:\x`, `\\host\share`.
fn is_path(core: &[u8]) -> bool {
    let slashes = core.iter().filter(|&&b| b == b'/').count();
    (core.first() == Some(&b'/') && slashes >= 2 && core.get(1) != Some(&b'/'))
        || (slashes >= 2 && contains(core, b"://"))
        || (core.len() > 2 && core[1] == b':' && core[2] == b'\\' && core[0].is_ascii_alphabetic())
        || core.starts_with(b"\\\\")
}

fn is_email(core: &[u8]) -> bool {
    match core.iter().position(|&b| b == b'@') {
        Some(at) => {
            at > 0
                && core[at + 1..].contains(&b'.')
                && core.iter().filter(|&&b| b == b'@').count() == 1
                && core
                    .iter()
                    .all(|&b| is_alnum(b) || matches!(b, b'@' | b'.' | b'-' | b'_' | b'+'))
        }
        None => false,
    }
}

/// `name.domain:port` (the port all digits, the host a dotted or dashed name).
fn is_host_port(core: &[u8]) -> bool {
    let Some(colon) = core.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let (host, port) = (&core[..colon], &core[colon + 1..]);
    !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && host.len() >= 3
        && host.iter().any(|&b| b == b'.' || b == b'-')
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && host.first().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_quoted(token: &[u8]) -> bool {
    token.len() >= 2 && matches!(token[0], b'"' | b'\'') && token.last() == Some(&token[0])
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

// ---------------------------------------------------------------------------------------
// Hashing: tokens are compared by 64-bit hash (a collision, ~2^-64 per pair, would only
// make two tokens count as equal).

/// Multiply-rotate over 8-byte words: tokens of up to 8 bytes and equal length never
/// collide (each step is a bijection of the word); the final fold mixes high bits down.
fn hash_bytes(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(26) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        h = (h.rotate_left(26) ^ tail_word(bytes, rest.len())).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

/// The last `n` (1 to 7) bytes of `bytes` as a little-endian word, read with a few
/// overlapping loads rather than byte by byte (this runs for nearly every token).
#[inline(always)]
fn tail_word(bytes: &[u8], n: usize) -> u64 {
    let len = bytes.len();
    let load = |at: usize, width: usize| -> u64 {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(&bytes[at..at + width]);
        u64::from_le_bytes(w)
    };
    if len >= 8 {
        // The 8 bytes ending the slice, shifted down to its last `n`.
        return load(len - 8, 8) >> (8 * (8 - n));
    }
    // The whole slice is the tail: `n == len`.
    match n {
        4..=7 => load(0, 4) | (load(n - 4, 4) << (8 * (n - 4))),
        2 | 3 => load(0, 2) | (load(n - 2, 2) << (8 * (n - 2))),
        _ => load(0, 1),
    }
}

/// Low hash bit: the token holds a parameter (`<*>`, `blk_<*>`).
const VAR_BIT: u64 = 1;

/// Second hash bit: a log level (`INFO`, `[error]`): header, neither matches nor differs.
const LEVEL_BIT: u64 = 2;

fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn wildcard_hash() -> u64 {
    const W: u64 = {
        // `hash_bytes(b"<*>")`, as a constant.
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let h = 3u64.wrapping_mul(K);
        let w = u64::from_le_bytes([b'<', b'*', b'>', 0, 0, 0, 0, 0]);
        let h = (h.rotate_left(26) ^ w).wrapping_mul(K);
        ((h ^ (h >> 32)) & !LEVEL_BIT) | VAR_BIT
    };
    W
}

fn sequence_hash(tokens: &[u64]) -> u64 {
    let mut h = (tokens.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for &t in tokens {
        h = (h.rotate_left(29) ^ t).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fmix(h)
}

/// The maps are keyed by values that already are hashes (or small ids): pass them through.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The template a single line gets: its masked form.
    fn masked(line: &str) -> String {
        let mut d = Drain::new(DrainConfig::default());
        let g = d.add(line);
        d.template(g)
    }

    #[test]
    fn masks_numbers_ids_and_signs() {
        assert_eq!(masked("took 250 ms"), "took <*> ms");
        assert_eq!(masked("offset -17 and +3"), "offset <*> and <*>");
        assert_eq!(
            masked("block blk_-6952295868487656571 done"),
            "block blk_<*> done"
        );
        assert_eq!(
            masked("block blk_38865049064139660 done"),
            "block blk_<*> done"
        );
        assert_eq!(
            masked("attempt_1445144423722_0020_m_000002_0 started"),
            "attempt_<*> started"
        );
        assert_eq!(
            masked("(uid=0) [2915]: pid=42,"),
            "(uid=<*>) [<*>]: pid=<*>,"
        );
        assert_eq!(
            masked("at java.lang.Thread.run(Thread.java:745)"),
            "at java.lang.Thread.run(Thread.java:<*>)"
        );
    }

    #[test]
    fn masks_ips_host_ports_and_ipv6() {
        assert_eq!(
            masked("from 10.251.73.220:50010 to /10.10.34.11:3888"),
            "from <*> to /<*>"
        );
        assert_eq!(
            masked("synchronized to 10.100.20.250, stratum 3"),
            "synchronized to <*>, stratum <*>"
        );
        assert_eq!(
            masked("proxy proxy.cse.cuhk.edu.hk:5070 open"),
            "proxy <*> open"
        );
        assert_eq!(masked("peer fe80::1ff:fe23:4567:890a up"), "peer <*> up");
        assert_eq!(
            masked("listening on [::1]:8080"),
            "listening on [::<*>]:<*>"
        );
    }

    #[test]
    fn masks_hex_uuids_and_request_ids() {
        assert_eq!(
            masked("register: 0x00002000 at 0xdeadbeef"),
            "register: <*> at <*>"
        );
        assert_eq!(
            masked("token 54fadb412c4e40cdbaed9335e4c35a9e ok"),
            "token <*> ok"
        );
        assert_eq!(
            masked("instance 38101a0b-2096-447d-96ea-a692162415ae gone"),
            "instance <*> gone"
        );
        assert_eq!(
            masked("[req-9bc36dd9-91c5-4314-898a-47625eb93b09 - -] done"),
            "[req-<*> - -] done"
        );
        assert_eq!(masked("id ffffffff-ffff-ffff-ffff-ffffffffffff"), "id <*>");
    }

    #[test]
    fn syslog_hosts_are_parameters() {
        // The same event from two hosts named by words is one group.
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add("Jul  1 09:04:33 web-blue sshd[812]: Accepted publickey for deploy");
        let b = d.add("Jul  2 11:00:01 authorMacBook-Pro sshd[9]: Accepted publickey for deploy");
        assert_eq!(d.resolve(a), d.resolve(b));
        assert_eq!(
            d.template(d.resolve(a)),
            "<*> <*> <*> <*> sshd[<*>]: Accepted publickey for deploy"
        );
        // Tags without a pid, after a sequence number or inside Thunderbird's header.
        assert_eq!(
            masked("Jun 14 15:16:01 combo kernel: Linux version"),
            "<*> <*> <*> <*> kernel: Linux version"
        );
        assert_eq!(
            masked("- 1131566461 2005.11.09 tbird Nov 9 12:01:01 admin crond[2915]: ok"),
            "- <*> <*> tbird <*> <*> <*> <*> crond[<*>]: ok"
        );
        // Not a syslog header: no tag after the word, a level, a date late in the line.
        assert_eq!(
            masked("Jul 1 09:04:33 backup finished fine"),
            "<*> <*> <*> backup finished fine"
        );
        assert_eq!(
            masked("Jul 1 09:04:33 INFO app: started"),
            "<*> <*> <*> INFO app: started"
        );
        assert_eq!(
            masked("a b c d e f g h i Jul 1 09:04:33 web-a sshd[1]: x"),
            "a b c d e f g h i <*> <*> <*> web-a sshd[<*>]: x"
        );
    }

    #[test]
    fn masks_durations_timestamps_and_dates() {
        assert_eq!(masked("took 250ms then 1.5s"), "took <*> then <*>");
        assert_eq!(
            masked("2015-10-18 18:01:47,978 INFO start"),
            "<*> <*> INFO start"
        );
        assert_eq!(masked("17/06/09 20:10:40 INFO start"), "<*> <*> INFO start");
        // A syslog header's host is a parameter too (`mask_syslog_host`).
        assert_eq!(
            masked("Jun 3 15:42:50 host sshd[19939]: ok"),
            "<*> <*> <*> <*> sshd[<*>]: ok"
        );
        assert_eq!(
            masked("[Sun Dec 04 04:47:44 2005] [notice] ok"),
            "[<*>] [notice] ok"
        );
        // BGL's header: epoch, date, node, timestamp, node.
        assert_eq!(
            masked("- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO x"),
            "- <*> <*> <*> <*> <*> RAS KERNEL INFO x"
        );
        // A month name only goes with a number after it.
        assert_eq!(masked("you May go"), "you May go");
        let rule = "-".repeat(40);
        assert_eq!(masked(&rule), rule);
    }

    #[test]
    fn masks_paths_emails_and_quoted_strings() {
        assert_eq!(masked("reading /etc/cron.hourly now"), "reading <*> now");
        assert_eq!(masked("(run-parts /etc/cron.hourly)"), "(run-parts <*>)");
        assert_eq!(masked("fetch https://example.com/a/b"), "fetch <*>");
        assert_eq!(masked("loaded C:\\Windows\\winsxs\\x.dll"), "loaded <*>");
        assert_eq!(masked("mail to ops@example.com sent"), "mail to <*> sent");
        // Quoted strings only on request.
        assert_eq!(masked("user 'bob' logged in"), "user 'bob' logged in");
        let mut d = Drain::new(DrainConfig {
            mask_quoted: true,
            ..DrainConfig::default()
        });
        let g = d.add("user 'bob' logged in");
        assert_eq!(d.template(g), "user '<*>' logged in");
    }

    #[test]
    fn keeps_words_and_word_like_tokens() {
        assert_eq!(
            masked("dfs.DataNode$PacketResponder: PacketResponder terminating"),
            "dfs.DataNode$PacketResponder: PacketResponder terminating"
        );
        assert_eq!(masked("using log4j and k8s"), "using log4j and k8s");
        assert_eq!(
            masked("Registered signal handlers for [TERM, HUP, INT]"),
            "Registered signal handlers for [TERM, HUP, INT]"
        );
    }

    #[test]
    fn bracketed_groups_are_one_token() {
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add(
            "INFO [IPC Server handler 19 on 62270] Listener: Progress of task attempt_1 is : 0.5",
        );
        let b = d.add("INFO [main] Listener: Progress of task attempt_2 is : 0.7");
        assert_eq!(a, b);
        assert_eq!(
            d.template(a),
            "INFO <*> Listener: Progress of task attempt_<*> is : <*>"
        );
    }

    #[test]
    fn identical_messages_share_a_group() {
        let mut d = Drain::new(DrainConfig::default());
        let ids: Vec<usize> = (0..10)
            .map(|_| d.add("Interrupted while waiting for message on queue"))
            .collect();
        assert!(ids.iter().all(|&g| g == ids[0]));
        assert_eq!(d.groups().len(), 1);
        assert_eq!(d.groups()[0].count, 10);
    }

    #[test]
    fn messages_differing_in_numbers_share_a_group() {
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating");
        let b = d.add("081109 203807 222 INFO dfs.DataNode$PacketResponder: PacketResponder 0 for block blk_-6952295868487656571 terminating");
        assert_eq!(a, b);
        assert_eq!(d.template(a), "<*> <*> <*> INFO dfs.DataNode$PacketResponder: PacketResponder <*> for block blk_<*> terminating");
    }

    #[test]
    fn different_verbs_make_different_groups() {
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add("2015-07-29 17:41:44,747 INFO connection opened for client 10.0.0.1");
        let b = d.add("2015-07-29 17:41:45,001 INFO connection closed for client 10.0.0.2");
        let c = d.add("2015-07-29 17:41:46,002 INFO session expired for client 10.0.0.3");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_eq!(
            d.template(a),
            "<*> <*> INFO connection opened for client <*>"
        );
    }

    #[test]
    fn templates_update_where_lines_differ() {
        let mut d = Drain::new(DrainConfig::default());
        let a = d.add("session opened for user root by admin");
        assert_eq!(d.template(a), "session opened for user root by admin");
        let b = d.add("session opened for user news by admin");
        assert_eq!(a, b);
        assert_eq!(d.template(a), "session opened for user <*> by admin");
        // The line that made the parameter is recorded with the old value.
        let groups = d.groups();
        let p = &groups[0].parameters;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].position, 4);
        assert_eq!(p[0].samples, vec!["root".to_string(), "news".to_string()]);
        assert_eq!(p[0].distinct, 2);
    }

    #[test]
    fn summaries_keep_counts_times_examples_and_parameters() {
        let mut d = Drain::new(DrainConfig::default());
        for i in 0..10i64 {
            let line = format!(
                "2024-01-01T00:00:{i:02} GET /api/v1/items/{i} took {}ms",
                i * 10
            );
            d.add_with(&line, Some(1000 + i), &line);
        }
        let groups = d.groups();
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.count, 10);
        assert_eq!(g.first_seen, Some(1000));
        assert_eq!(g.last_seen, Some(1009));
        assert_eq!(g.examples.len(), 3);
        assert!(g.examples[0].starts_with("2024-01-01T00:00:00 GET"));
        assert_eq!(g.template, "<*> GET <*> took <*>");
        assert_eq!(g.parameters.len(), 3);
        assert_eq!(g.parameters[1].samples.len(), 5);
        assert_eq!(g.parameters[1].distinct, 10);
        assert!(!g.parameters[1].distinct_capped);
        assert!(!g.overflow);
    }

    #[test]
    fn group_cap_sends_new_patterns_to_the_overflow_group() {
        let mut d = Drain::new(DrainConfig {
            max_groups: 3,
            ..DrainConfig::default()
        });
        let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
        let ids: Vec<usize> = words
            .iter()
            .map(|w| d.add(&format!("{w} happened here")))
            .collect();
        assert_eq!(ids[3], ids[4]);
        assert_eq!(ids[4], ids[5]);
        // Known patterns still find their groups.
        assert_eq!(d.add("alpha happened here"), ids[0]);
        let groups = d.groups();
        assert_eq!(groups.len(), 4);
        let overflow: Vec<&GroupSummary> = groups.iter().filter(|g| g.overflow).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].count, 3);
        assert_eq!(overflow[0].template, OVERFLOW_TEMPLATE);
        assert_eq!(d.template(ids[5]), OVERFLOW_TEMPLATE);
    }

    #[test]
    fn empty_blank_and_huge_lines_do_not_panic() {
        let mut d = Drain::new(DrainConfig::default());
        let e = d.add("");
        assert_eq!(d.add("   \t "), e);
        assert_eq!(d.template(e), "");
        let huge_words = "word ".repeat(200_000);
        let g = d.add(&huge_words);
        let t = d.template(g);
        assert_eq!(t.split(' ').count(), DrainConfig::default().max_tokens);
        assert!(t.ends_with(" <*>"));
        let huge_token = "x".repeat(1 << 20);
        let g = d.add(&huge_token);
        assert_eq!(d.template(g), "<*>");
        let g = d.add_with(&huge_words, Some(1), &huge_words);
        let summary = d.groups().into_iter().find(|s| s.id == g);
        assert!(summary
            .is_some_and(|s| s.examples[0].len() <= DrainConfig::default().max_example_bytes));
        assert_eq!(d.template(usize::MAX), "");
    }

    #[test]
    fn extra_delimiters_split_tokens() {
        let config = DrainConfig {
            extra_delimiters: vec!['|', '¦'],
            ..DrainConfig::default()
        };
        let mut d = Drain::new(config);
        let a = d.add("20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579");
        let b = d.add("20171223-22:15:29:633¦Step_LSC¦30002312¦onStandStepChanged 3580");
        assert_eq!(a, b);
        assert_eq!(d.template(a), "<*> Step_LSC <*> onStandStepChanged <*>");
    }

    #[test]
    fn templates_for_lines_gives_final_templates() {
        let lines = [
            "session opened for user root",
            "session opened for user news",
            "disk full on /dev/sda1",
        ];
        let out = templates_for_lines(lines.iter(), &DrainConfig::default());
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], out[1]);
        assert_eq!(out[0].1, "session opened for user <*>");
        assert_eq!(out[2].1, "disk full on <*>");
        assert_ne!(out[0].0, out[2].0);
    }

    #[test]
    fn write_templates_writes_one_line_per_input_line() {
        let text = "session opened for user root\r\nsession opened for user news\n\ndisk full on /dev/sda1\n";
        let mut out = Vec::new();
        let run = write_templates(text.as_bytes(), &DrainConfig::default(), true, &mut out)
            .expect("write");
        let lines = [
            "session opened for user root",
            "session opened for user news",
            "",
            "disk full on /dev/sda1",
        ];
        let expected: String = templates_for_lines(lines.iter(), &DrainConfig::default())
            .into_iter()
            .map(|(id, t)| format!("{id}\t{t}\n"))
            .collect();
        assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        assert_eq!(run.lines, 4);
        assert_eq!(run.groups, 3);
        let mut empty = Vec::new();
        let run =
            write_templates(&b""[..], &DrainConfig::default(), true, &mut empty).expect("write");
        assert_eq!((run.lines, empty.len()), (0, 0));
        let mut one = Vec::new();
        write_templates(&b"\n"[..], &DrainConfig::default(), true, &mut one).expect("write");
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count(), 1);
    }

    /// Reads a few bytes at a time, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn write_templates_is_the_same_whatever_the_blocks() {
        let mut text = Vec::new();
        for i in 0..300 {
            let line = match i % 4 {
                0 => format!("session opened for user u{i}\r\n"),
                1 => format!("GET /api/orders/{i} took {i}ms\n"),
                2 => "\n".to_string(),
                _ => format!("bad byte \u{e9} {i} \n"),
            };
            text.extend_from_slice(line.as_bytes());
        }
        // An invalid byte and a line longer than the small blocks.
        text.extend_from_slice(b"invalid \xff byte here\n");
        text.extend_from_slice("x".repeat(100).as_bytes());
        let config = DrainConfig::default();
        let mut whole = Vec::new();
        let run = write_templates_in_blocks(&text[..], &config, None, false, &mut whole, 1 << 20)
            .expect("write");
        assert_eq!(run.lines, 302);
        let cases = [(16, 7), (64, 64), (5, 1), (1000, 333), (1 << 16, 1 << 16)];
        let helpers = [
            (None, false),
            (Some(2), false),
            (Some(2), true),
            (Some(1000), true),
        ];
        for ((block, step), (helper, early)) in
            cases.into_iter().flat_map(|c| helpers.map(|h| (c, h)))
        {
            let mut out = Vec::new();
            let r = write_templates_in_blocks(
                Trickle(&text, step),
                &config,
                helper,
                early,
                &mut out,
                block,
            )
            .expect("write");
            assert_eq!(
                out, whole,
                "block {block}, reads of {step}, helper {helper:?}, early {early}"
            );
            assert_eq!((r.lines, r.groups), (run.lines, run.groups));
        }
        let out = String::from_utf8(whole).expect("utf-8");
        assert!(
            out.lines()
                .any(|l| l.ends_with("invalid \u{fffd} byte here")),
            "{out}"
        );
        assert_eq!(out.lines().count(), 302);
    }

    /// Compaction keeps the rare line that explains an incident: 30 errors among a million
    /// routine lines end up in their own group with their exact count.
    #[test]
    fn rare_error_survives_a_million_routine_lines() {
        let mut d = Drain::new(DrainConfig::default());
        let mut rare = None;
        for i in 0..1_000_000u32 {
            let line = match i % 5 {
                0 => format!(
                    "2024-05-01T10:{:02}:{:02}Z INFO http GET /api/orders/{i} 200 in {}ms",
                    i % 60,
                    i % 59,
                    i % 97
                ),
                1 => format!(
                    "2024-05-01T10:00:00Z INFO cache hit ratio {}.{} for shard-{}",
                    i % 100,
                    i % 10,
                    i % 16
                ),
                2 => format!(
                    "2024-05-01T10:00:00Z DEBUG worker {} picked job {i} from queue orders",
                    i % 8
                ),
                3 => format!(
                    "2024-05-01T10:00:00Z INFO user u{} logged in from 10.0.{}.{}",
                    i % 1000,
                    i % 255,
                    i % 253
                ),
                _ => format!(
                    "2024-05-01T10:00:00Z WARN slow query took {}ms on table orders",
                    100 + i % 900
                ),
            };
            d.add(&line);
            if i % 33_334 == 7 {
                let g = d.add(&format!(
                    "2024-05-01T10:00:00Z ERROR payment provider timeout after {}ms for order {i}",
                    3000 + i % 7
                ));
                assert_eq!(*rare.get_or_insert(g), g);
            }
        }
        let groups = d.groups();
        assert!(groups.len() <= 10, "{groups:#?}");
        let rare = groups.iter().find(|g| Some(g.id) == rare);
        let Some(rare) = rare else {
            panic!("the rare group is gone")
        };
        assert_eq!(rare.count, 30);
        assert_eq!(
            rare.template,
            "<*> ERROR payment provider timeout after <*> for order <*>"
        );
    }

    #[test]
    fn chunks_cover_the_block_in_order_and_shrink_at_its_end() {
        for n in [0, 1, 15, 16, 17, 127, 128, 129, 1000, 2000, 100_000] {
            let owned: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let lines: Vec<&str> = owned.iter().map(String::as_str).collect();
            let chunks = chunk_lines(&lines);
            let joined: Vec<&str> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, lines, "{n} lines");
            assert!(chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= CHUNK_LINES));
            // Never longer than the one before (full ones, then shrinking ones).
            assert!(
                chunks.windows(2).all(|w| w[1].len() <= w[0].len()),
                "{n} lines"
            );
            if n >= 2000 {
                assert_eq!(chunks[0].len(), CHUNK_LINES);
                assert!(chunks[chunks.len() - 1].len() <= MIN_CHUNK_LINES);
            }
        }
    }

    #[test]
    fn returned_ids_resolve_to_reported_groups() {
        let lines = [
            "a x 1 b",
            "a y 2 b",
            "a 3 x b",
            "conn from 1.2.3.4 closed",
            "conn from host closed",
            "conn to 1.2.3.4 closed",
        ];
        let mut d = Drain::new(DrainConfig::default());
        let ids: Vec<usize> = lines.iter().map(|l| d.add(l)).collect();
        let reported: Vec<usize> = d.groups().iter().map(|g| g.id).collect();
        for id in ids {
            assert!(reported.contains(&d.resolve(id)));
        }
        let total: u64 = d.groups().iter().map(|g| g.count).sum();
        assert_eq!(total, lines.len() as u64);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The helper thread changes nothing: lines drawn from a few events with varying
        /// words and numbers, more than one chunk, through both paths and odd block sizes.
        #[test]
        fn helper_thread_gives_the_same_templates(
            picks in proptest::collection::vec((0usize..6, 0u32..40, "[a-z]{1,6}"), 300..1500),
            block in 200usize..5000,
        ) {
            let mut text = String::new();
            for (event, n, word) in &picks {
                let line = match event {
                    0 => format!("081109 2036{n:02} INFO dfs.DataNode: Receiving block blk_{n} src: /10.0.0.{n}:50010"),
                    1 => format!("session opened for user {word} by (uid={n})"),
                    2 => format!("ERROR payment failed for order {n}: {word} timeout after {n}ms"),
                    3 => format!("[{word} worker {n}] GET /api/{word}/{n} 200"),
                    4 => format!("Invalid user {word} from 192.168.1.{n}"),
                    _ => format!("{word} {word} {n}"),
                };
                text.push_str(&line);
                text.push('\n');
            }
            let config = DrainConfig::default();
            let mut single = Vec::new();
            write_templates_in_blocks(text.as_bytes(), &config, None, false, &mut single, 1 << 18)
                .expect("write");
            for early in [false, true] {
                let mut helped = Vec::new();
                write_templates_in_blocks(text.as_bytes(), &config, Some(1), early, &mut helped, block)
                    .expect("write");
                prop_assert_eq!(&single, &helped);
            }

            // The helper's path taken for every line (the timing above may not take it).
            let lines: Vec<&str> = text.lines().collect();
            let config = DrainConfig { track_parameters: false, max_examples: 0, ..config };
            let mut serial = Drain::new(config.clone());
            let mut split = Drain::new(config);
            let tokenized = split.tokenizer().tokenize_all(&lines);
            let mut warmed = split.tokenizer();
            warmed.warm_up(|| false);
            let again = warmed.tokenize_all(&lines);
            prop_assert_eq!(&tokenized.hashes, &again.hashes);
            prop_assert_eq!(&tokenized.keyed, &again.keyed);
            prop_assert_eq!(&tokenized.ends, &again.ends);
            for (i, line) in lines.iter().enumerate() {
                let a = serial.add(line);
                let (hashes, keyed) = tokenized.line(i);
                let b = split.add_tokenized(line, hashes, keyed);
                prop_assert_eq!(a, b);
            }
            prop_assert_eq!(serial.groups(), split.groups());
        }
    }

    proptest! {
        #[test]
        fn add_never_panics_and_groups_stay_within_lines(
            lines in proptest::collection::vec(any::<String>(), 0..40),
            ascii in proptest::collection::vec("[ -~\t]{0,80}", 0..40),
        ) {
            let mut d = Drain::new(DrainConfig { max_groups: 16, ..DrainConfig::default() });
            let mut n = 0usize;
            for line in lines.iter().chain(&ascii) {
                let g = d.add_with(line, Some(n as i64), line);
                n += 1;
                prop_assert!(d.groups().iter().any(|s| s.id == d.resolve(g)));
            }
            prop_assert!(d.group_count() <= n);
            prop_assert!(d.group_count() <= 17);
            prop_assert_eq!(d.groups().iter().map(|g| g.count).sum::<u64>(), n as u64);
        }
    }
    #[test]
    fn levels_are_recognised_alone_in_upper_case_or_bracketed() {
        for level in [
            "INFO", "WARN", "ERROR", "CRITICAL", "[error]", "<notice>", "(Warn)", "[INFO.",
        ] {
            assert!(is_level(level.as_bytes()), "{level}");
        }
        for word in [
            "Info",
            "info",
            "INFOS",
            "[informational]",
            "[ERR\0]",
            "[ERR",
            "ERR]",
            "[[ERR]]",
            "<ÉRR>",
            "IN",
            "",
            "[INFO]:",
            "<crit>,",
        ] {
            assert!(!is_level(word.as_bytes()), "{word:?}");
        }
    }

    #[test]
    fn token_cache_stays_bounded() {
        let mut cache = MaskCache::default();
        for i in 0..50_000u32 {
            let token = format!("host-{i}-x{i}y");
            cache.put(
                token.as_bytes(),
                hash_bytes(token.as_bytes()),
                b"host-<*>",
                true,
                Kind::Param,
            );
            assert!(cache.bytes.len() <= MaskCache::MAX_BYTES);
            assert!(cache.slots.len() <= MaskCache::SLOTS);
        }
        let last = b"host-49999-x49999y";
        assert_eq!(
            cache.get(last, hash_bytes(last)),
            Some((&b"host-<*>"[..], true, Kind::Param))
        );
        let other = b"host-49999-x49999z";
        assert_eq!(cache.get(other, hash_bytes(other)), None);
        // A different token in the same slot never reads the stored one.
        assert_eq!(cache.get(other, hash_bytes(last)), None);
    }

    #[test]
    fn spare_core_answers() {
        // Whatever the machine is doing; it must not fail.
        let _ = spare_core();
    }

    proptest! {
        /// The token cache changes nothing: a line masked again and again (its tokens
        /// then served from the cache) hashes and reads the same.
        #[test]
        fn cached_tokens_mask_the_same(
            words in proptest::collection::vec("[a-zA-Z0-9:/@._\\-]{1,40}", 1..10),
        ) {
            let line = words.join(" ");
            let config = DrainConfig::default();
            let classes = Drain::new(config.clone()).classes;
            let mut fresh = Line::default();
            tokenize(&config, 3, &classes, &line, &mut fresh);
            let mut cached = Line::default();
            for _ in 0..3 {
                tokenize(&config, 3, &classes, &line, &mut cached);
            }
            let texts = |l: &Line| -> Vec<Vec<u8>> {
                l.tokens.iter().map(|t| t.text(line.as_bytes(), &l.masked).to_vec()).collect()
            };
            prop_assert_eq!(&fresh.hashes, &cached.hashes);
            prop_assert_eq!(&fresh.skip, &cached.skip);
            prop_assert_eq!(texts(&fresh), texts(&cached));
        }
    }
    proptest! {
        /// A token met again in its line reuses its first result (`MaskScratch::last`):
        /// each token still masks as it does alone. Letters that spell no month, day or
        /// level, and no brackets, so that no token depends on its neighbours.
        #[test]
        fn repeated_tokens_mask_as_alone(
            words in proptest::collection::vec("[qxzk0-9:/@._\\-]{1,24}", 1..6),
            picks in proptest::collection::vec(0usize..6, 1..12),
        ) {
            let chosen: Vec<&str> = picks.iter().map(|&i| words[i % words.len()].as_str()).collect();
            let differs = first_token_masked_otherwise(&chosen);
            prop_assert!(differs.is_none(), "{:?}", differs);
        }
    }

    /// Tokenises `parts` joined by spaces and each part alone: the first part whose token
    /// in the line differs from its token alone (text, hash or raw span), if any.
    fn first_token_masked_otherwise(parts: &[&str]) -> Option<String> {
        let config = DrainConfig::default();
        let classes = Drain::new(config.clone()).classes;
        let line = parts.join(" ");
        let mut whole = Line::default();
        tokenize(&config, 3, &classes, &line, &mut whole);
        if whole.tokens.len() != parts.len() {
            return Some(format!(
                "{} tokens for {} parts in {line}",
                whole.tokens.len(),
                parts.len()
            ));
        }
        let mut at = 0;
        for (i, part) in parts.iter().enumerate() {
            let mut alone = Line::default();
            tokenize(&config, 3, &classes, part, &mut alone);
            let in_line = whole.tokens[i].text(line.as_bytes(), &whole.masked);
            let by_itself = alone.tokens[0].text(part.as_bytes(), &alone.masked);
            let span = (at as u32, (at + part.len()) as u32);
            if in_line != by_itself
                || whole.hashes[i] != alone.hashes[0]
                || whole.tokens[i].raw != span
            {
                return Some(format!(
                    "{part} in {line}: {:?} vs {:?} alone, raw {:?} vs {span:?}",
                    String::from_utf8_lossy(in_line),
                    String::from_utf8_lossy(by_itself),
                    whole.tokens[i].raw
                ));
            }
            at += part.len() + 1;
        }
        None
    }

    #[test]
    fn repeated_tokens_inside_and_outside_groups_mask_as_alone() {
        // `[abc1` is a token, then the first part of the group `[abc1 def]`.
        let parts = [
            "[abc1",
            "[abc1 def]",
            "[zz R02-M1-N0]",
            "R02-M1-N0",
            "[qq R02-M1-N0 zz]",
            "[R02-M1-N0 R02-M1-N0 qq]",
            "R02-M1-N0",
            "core.2275",
        ];
        assert_eq!(first_token_masked_otherwise(&parts), None);
    }

    proptest! {
        /// Hashes read the tail with overlapping loads: the same as assembling it byte
        /// by byte.
        #[test]
        fn tail_words_match_bytewise_assembly(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let rest = bytes.len() % 8;
            if rest > 0 {
                let tail = &bytes[bytes.len() - rest..];
                let expected = tail
                    .iter()
                    .enumerate()
                    .fold(0u64, |w, (i, &b)| w | (u64::from(b) << (8 * i)));
                prop_assert_eq!(tail_word(&bytes, rest), expected);
            }
        }
    }
}
