//! Where every key and value of a YAML document sits (`line:col`), by path.
//!
//! `serde_yaml::Value` carries no positions, so the loader parses the same text a second
//! time with yaml-rust2's event parser and records, for each path such as
//! `probes[3].request.url`, the position of the key and of the value. Lookups fall back to
//! the nearest parent in the index (values that came in through an alias or a merge key have
//! no position of their own).

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Idx(usize),
}

/// A 1-based position in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn of(m: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// What the index knows of one node.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The key's position, for a mapping value.
    pub key: Option<Pos>,
    /// Where the value starts.
    pub value: Pos,
    /// A plain (unquoted) scalar: interpolation may turn it into a number or a bool.
    pub plain: bool,
}

/// Which end of a `key: value` pair a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Key,
    Value,
}

/// Positions by path, for one document.
#[derive(Debug, Default)]
pub struct Index {
    map: HashMap<Vec<Seg>, Entry>,
    /// Keys written twice in one mapping: the path and position of each repeat.
    pub duplicates: Vec<(Vec<Seg>, Pos)>,
    /// Keys renamed by interpolation (`x` from `x_file`): the new path, the key as written.
    pub renamed: HashMap<Vec<Seg>, String>,
}

impl Index {
    /// Indexes the first document of `text`. A syntax error leaves the index partial (the
    /// error itself is reported from serde_yaml).
    pub fn build(text: &str) -> Index {
        let mut b = Builder::default();
        let _ = Parser::new_from_str(text).load(&mut b, false);
        let mut index = Index::default();
        if let Some(root) = b.root {
            index.walk(&root, &mut Vec::new(), None);
        }
        index
    }

    pub fn get(&self, path: &[Seg]) -> Option<&Entry> {
        self.map.get(path)
    }

    /// The position of `path` (its key or its value), or of its nearest indexed parent.
    pub fn locate(&self, path: &[Seg], at: At) -> Pos {
        let mut p = path;
        loop {
            if let Some(e) = self.map.get(p) {
                return match at {
                    At::Key => e.key.unwrap_or(e.value),
                    At::Value => e.value,
                };
            }
            match p.split_last() {
                Some((_, parent)) => p = parent,
                None => return Pos::START,
            }
        }
    }

    /// Makes `to` answer with the position of `from` (a `x_file` key replaced by `x`).
    pub fn alias(&mut self, from: &[Seg], to: Vec<Seg>) {
        if let Some(Seg::Key(k)) = from.last() {
            self.renamed.insert(to.clone(), k.clone());
        }
        if let Some(e) = self.map.get(from).copied() {
            self.map.insert(to, e);
        }
    }

    fn walk(&mut self, node: &Node, path: &mut Vec<Seg>, key: Option<Pos>) {
        let plain = matches!(node, Node::Scalar { plain: true, .. });
        self.map.insert(
            path.clone(),
            Entry {
                key,
                value: node.pos(),
                plain,
            },
        );
        match node {
            Node::Map { entries, .. } => {
                let mut seen = HashSet::new();
                for (k, v) in entries {
                    let Node::Scalar { text, .. } = k else {
                        continue;
                    };
                    path.push(Seg::Key(text.clone()));
                    if !seen.insert(text.as_str()) {
                        self.duplicates.push((path.clone(), k.pos()));
                    } else {
                        self.walk(v, path, Some(k.pos()));
                    }
                    path.pop();
                }
            }
            Node::Seq { items, .. } => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Idx(i));
                    self.walk(item, path, None);
                    path.pop();
                }
            }
            Node::Scalar { .. } | Node::Alias { .. } => {}
        }
    }
}

/// The document as a tree with positions.
enum Node {
    Scalar {
        text: String,
        plain: bool,
        pos: Pos,
    },
    Map {
        pos: Pos,
        entries: Vec<(Node, Node)>,
    },
    Seq {
        pos: Pos,
        items: Vec<Node>,
    },
    Alias {
        pos: Pos,
    },
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Alias { pos } => *pos,
            // A block mapping's start event is marked after its first key; the first key is
            // where a reader sees the mapping begin.
            Node::Map { pos, entries } => match entries.first() {
                Some((k, _)) => (*pos).min(k.pos()),
                None => *pos,
            },
        }
    }
}

/// Turns parser events into a [`Node`] tree.
#[derive(Default)]
struct Builder {
    stack: Vec<(bool, Pos, Vec<Node>)>,
    root: Option<Node>,
}

impl Builder {
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some((_, _, children)) => children.push(node),
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::of(mark);
        match ev {
            Event::Scalar(text, style, _, _) => self.push(Node::Scalar {
                text,
                plain: style == TScalarStyle::Plain,
                pos,
            }),
            Event::Alias(_) => self.push(Node::Alias { pos }),
            Event::MappingStart(..) => self.stack.push((true, pos, Vec::new())),
            Event::SequenceStart(..) => self.stack.push((false, pos, Vec::new())),
            Event::MappingEnd | Event::SequenceEnd => {
                let Some((is_map, pos, children)) = self.stack.pop() else {
                    return;
                };
                let node = if is_map {
                    let mut entries = Vec::with_capacity(children.len() / 2);
                    let mut it = children.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        entries.push((k, v));
                    }
                    Node::Map { pos, entries }
                } else {
                    Node::Seq {
                        pos,
                        items: children,
                    }
                };
                self.push(node);
            }
            _ => {}
        }
    }
}
