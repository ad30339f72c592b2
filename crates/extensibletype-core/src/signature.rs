//! Typed methods: the signature grammar of docs/spec.md §9 ("Typed methods").
//!
//! A *typed key* is `"<interface>:<method>#<signature>"`, e.g.
//! `"geom.Shape.v1:area#f64(O)"`; its id is the ordinary [`prehash`](crate::prehash)
//! of the whole string. The signature spells one C function type, with one
//! spelling per type, so that provider and consumer agree byte for byte:
//!
//! ```text
//! signature := RET "(" ARG ("," ARG)* ")" [ "!t" | "!e" ]
//! RET       := VALUE | "v" | "O+"
//! ARG       := VALUE | "O"                       (the first ARG is always "O")
//! VALUE     := SCALAR | "p" | "*"+ (SCALAR | "p")
//! SCALAR    := i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 c64 c128 b
//! ```
//!
//! - ASCII only, no spaces, codes are lower case (`O` is the only capital).
//! - `p` is `void *`; `*X` a pointer to `X`, nestable up to [`MAX_POINTER_DEPTH`]
//!   levels (`**f64` is `double **`, `*p` is `void **`). There is no `*O`,
//!   `*v` (that is `p`) or pointer to `O+`.
//! - `O` is a borrowed `PyObject *` (arguments only); `O+` a new reference
//!   (returns only, and only with a flag); `v` is `void` (returns only).
//! - `!t`: called with an attached thread state; `!e`: may raise (implies
//!   `!t`); its C function returns `int32_t` and writes a non-`v` result
//!   through a trailing out-pointer (`O+` is returned directly instead).
//! - Widths, never C names: `Py_ssize_t`, `long`, `isize`, `c_long` are written
//!   as the fixed width they have on the target (`i64` on LP64).
//!
//! Every string this module accepts is canonical: [`Signature`]'s `Display`
//! re-renders it byte for byte. Everything else is a [`SignatureError`] whose
//! message names the problem and its byte offset.
//!
//! ```
//! use extensibletype_core::signature::{method_key, parse_signature, parse_typed_key};
//! let sig = parse_signature("f64(O,*f64,i64)!e").unwrap();
//! assert_eq!(sig.to_string(), "f64(O,*f64,i64)!e");
//! assert_eq!(method_key("geom.Shape.v1:area", "f64(O)").unwrap(), "geom.Shape.v1:area#f64(O)");
//! let key = parse_typed_key("geom.Shape.v1:area#f64(O)").unwrap();
//! assert_eq!((key.interface, key.method), ("geom.Shape.v1", "area"));
//! let err = parse_signature("double(O)").unwrap_err();
//! assert_eq!(err.to_string(), "unknown type code 'double' at offset 0");
//! ```

use core::fmt;

/// The deepest pointer nesting a signature may spell (`********f64`).
pub const MAX_POINTER_DEPTH: u8 = 8;

/// A fixed-width scalar code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// `i8`: `int8_t`.
    I8,
    /// `i16`: `int16_t`.
    I16,
    /// `i32`: `int32_t`.
    I32,
    /// `i64`: `int64_t`.
    I64,
    /// `u8`: `uint8_t`.
    U8,
    /// `u16`: `uint16_t`.
    U16,
    /// `u32`: `uint32_t`.
    U32,
    /// `u64`: `uint64_t`.
    U64,
    /// `f32`: `float`.
    F32,
    /// `f64`: `double`.
    F64,
    /// `c64`: `float _Complex` (two `f32`).
    C64,
    /// `c128`: `double _Complex` (two `f64`).
    C128,
    /// `b`: a one-byte C `bool`.
    B,
}

impl Scalar {
    /// Every scalar, in the order of docs/spec.md §9.
    pub const ALL: [Scalar; 13] = [
        Scalar::I8,
        Scalar::I16,
        Scalar::I32,
        Scalar::I64,
        Scalar::U8,
        Scalar::U16,
        Scalar::U32,
        Scalar::U64,
        Scalar::F32,
        Scalar::F64,
        Scalar::C64,
        Scalar::C128,
        Scalar::B,
    ];

    /// The code as written in a signature (`"f64"`).
    pub const fn code(self) -> &'static str {
        match self {
            Scalar::I8 => "i8",
            Scalar::I16 => "i16",
            Scalar::I32 => "i32",
            Scalar::I64 => "i64",
            Scalar::U8 => "u8",
            Scalar::U16 => "u16",
            Scalar::U32 => "u32",
            Scalar::U64 => "u64",
            Scalar::F32 => "f32",
            Scalar::F64 => "f64",
            Scalar::C64 => "c64",
            Scalar::C128 => "c128",
            Scalar::B => "b",
        }
    }

    /// The size in bytes of the C type.
    pub const fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 | Scalar::B => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::U64 | Scalar::F64 | Scalar::C64 => 8,
            Scalar::C128 => 16,
        }
    }

    /// The scalar spelled `code`, if any.
    pub fn from_code(code: &str) -> Option<Scalar> {
        Scalar::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// What a [`Type`] is, before its pointer levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Base {
    /// A fixed-width scalar.
    Scalar(Scalar),
    /// `p`: `void *`.
    VoidPtr,
    /// `O`: a borrowed `PyObject *` (arguments only).
    Object,
    /// `O+`: a new reference to a `PyObject` (returns only, with a flag).
    NewRef,
    /// `v`: `void` (returns only).
    Void,
}

/// One type of a signature: a [`Base`] behind `depth` pointer levels
/// (`*` prefixes; only scalars and `p` may be pointed to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    /// The type pointed to (or the type itself when `depth` is 0).
    pub base: Base,
    /// How many `*` come before the base code (0 ..= [`MAX_POINTER_DEPTH`]).
    pub depth: u8,
}

impl Type {
    /// A type with no pointer level.
    pub const fn of(base: Base) -> Type {
        Type { base, depth: 0 }
    }

    /// A scalar with no pointer level.
    pub const fn scalar(s: Scalar) -> Type {
        Type { base: Base::Scalar(s), depth: 0 }
    }

    /// A pointer to this type (one more `*`).
    pub const fn pointer(self) -> Type {
        Type { base: self.base, depth: self.depth + 1 }
    }

    /// The base code without the `*` prefixes (`"f64"`, `"p"`, `"O+"`).
    pub const fn base_code(self) -> &'static str {
        match self.base {
            Base::Scalar(s) => s.code(),
            Base::VoidPtr => "p",
            Base::Object => "O",
            Base::NewRef => "O+",
            Base::Void => "v",
        }
    }

    /// Whether this type may appear as an argument.
    pub const fn is_argument(self) -> bool {
        !matches!(self.base, Base::Void | Base::NewRef)
    }

    /// Whether this type may appear as a return type.
    pub const fn is_return(self) -> bool {
        !matches!(self.base, Base::Object)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for _ in 0..self.depth {
            f.write_str("*")?;
        }
        f.write_str(self.base_code())
    }
}

/// The flag of a signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Flag {
    /// No flag: callable with no thread state; must not raise.
    #[default]
    None,
    /// `!t`: the caller holds an attached thread state.
    Thread,
    /// `!e`: may raise (implies `!t`): returns `int32_t` 0 / -1 with an
    /// exception set, the result through a trailing out-pointer (`O+`:
    /// returned directly, NULL with an exception set).
    Raises,
}

impl Flag {
    /// The flag as written (`""`, `"!t"`, `"!e"`).
    pub const fn suffix(self) -> &'static str {
        match self {
            Flag::None => "",
            Flag::Thread => "!t",
            Flag::Raises => "!e",
        }
    }

    /// The flag's letter (`""`, `"t"`, `"e"`).
    pub const fn letter(self) -> &'static str {
        match self {
            Flag::None => "",
            Flag::Thread => "t",
            Flag::Raises => "e",
        }
    }
}

/// A parsed, valid signature. `Display` gives its canonical spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    /// The return type (as spelled: for `!e` the value written through the
    /// out-pointer, `v` for none).
    pub ret: Type,
    /// The arguments; the first is always `O`.
    pub args: Vec<Type>,
    /// The flag.
    pub flag: Flag,
}

impl Signature {
    /// Check the rules of docs/spec.md §9 on an assembled signature (what
    /// [`parse_signature`] checks after the syntax). Offsets in the error
    /// are those of the canonical rendering.
    pub fn validate(&self) -> Result<(), SignatureError> {
        let mut at = 0;
        check_type(self.ret, at)?;
        if !self.ret.is_return() {
            return Err(SignatureError::new(
                SignatureErrorKind::NotAReturn,
                at,
                format!("'{}' cannot be returned: O is a borrowed argument; a returned object is O+ (a new reference)", self.ret),
            ));
        }
        at += self.ret.to_string().len() + 1;
        if self.args.is_empty() {
            return Err(SignatureError::new(
                SignatureErrorKind::FirstArgument,
                at,
                format!("a method's first argument must be O (the object itself) at offset {at}; the signature has no arguments"),
            ));
        }
        for (i, arg) in self.args.iter().enumerate() {
            check_type(*arg, at)?;
            if !arg.is_argument() {
                return Err(SignatureError::new(
                    SignatureErrorKind::NotAnArgument,
                    at,
                    format!("'{arg}' is a return type only, not an argument (at offset {at})"),
                ));
            }
            if i == 0 && *arg != Type::of(Base::Object) {
                return Err(SignatureError::new(
                    SignatureErrorKind::FirstArgument,
                    at,
                    format!("a method's first argument must be O (the object itself), not '{arg}' at offset {at}"),
                ));
            }
            at += arg.to_string().len() + 1;
        }
        if self.ret.base == Base::NewRef && self.flag == Flag::None {
            return Err(SignatureError::new(
                SignatureErrorKind::NeedsFlag,
                0,
                "O+ (a new reference) can only be returned with a thread state: add !t or !e".into(),
            ));
        }
        Ok(())
    }
}

fn check_type(ty: Type, at: usize) -> Result<(), SignatureError> {
    if ty.depth > MAX_POINTER_DEPTH {
        return Err(SignatureError::new(
            SignatureErrorKind::BadPointer,
            at,
            format!("more than {MAX_POINTER_DEPTH} pointer levels at offset {at}"),
        ));
    }
    if ty.depth > 0 && !matches!(ty.base, Base::Scalar(_) | Base::VoidPtr) {
        return Err(SignatureError::new(
            SignatureErrorKind::BadPointer,
            at,
            format!(
                "'*' points to a scalar or p only, not '{}' (at offset {at}; void * is p)",
                ty.base_code()
            ),
        ));
    }
    Ok(())
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.ret)?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{arg}")?;
        }
        write!(f, "){}", self.flag.suffix())
    }
}

impl core::str::FromStr for Signature {
    type Err = SignatureError;
    fn from_str(s: &str) -> Result<Signature, SignatureError> {
        parse_signature(s)
    }
}

/// What is wrong with a signature or typed key ([`SignatureError::kind`]).
/// [`as_str`](SignatureErrorKind::as_str) gives a stable short name (used by
/// `tests/golden/typed_keys.txt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureErrorKind {
    /// The signature is empty.
    Empty,
    /// A character that cannot appear there (a space, non-ASCII, stray punctuation).
    UnexpectedChar,
    /// A word that is not a type code (`double`, `F64`).
    UnknownCode,
    /// The text ends (or a `,`/`)` comes) where a type code is expected.
    MissingCode,
    /// No `(` after the return type, or no `)` at the end of the arguments.
    Unterminated,
    /// A flag other than `!t` / `!e`.
    UnknownFlag,
    /// More than one flag.
    TwoFlags,
    /// Text after the signature that is not a flag.
    Trailing,
    /// `O` used as a return type.
    NotAReturn,
    /// `v` or `O+` used as an argument.
    NotAnArgument,
    /// The first argument is not `O` (or there is none).
    FirstArgument,
    /// `O+` returned without `!t` / `!e`.
    NeedsFlag,
    /// `*` before something other than a scalar or `p`, or nested too deep.
    BadPointer,
    /// A typed key whose name part is not `<interface>:<method>`.
    KeyShape,
}

impl SignatureErrorKind {
    /// A stable short name: `empty`, `char`, `code`, `missing`,
    /// `unterminated`, `flag`, `two-flags`, `trailing`, `return`,
    /// `argument`, `first`, `needs-flag`, `pointer`, `key`.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureErrorKind::Empty => "empty",
            SignatureErrorKind::UnexpectedChar => "char",
            SignatureErrorKind::UnknownCode => "code",
            SignatureErrorKind::MissingCode => "missing",
            SignatureErrorKind::Unterminated => "unterminated",
            SignatureErrorKind::UnknownFlag => "flag",
            SignatureErrorKind::TwoFlags => "two-flags",
            SignatureErrorKind::Trailing => "trailing",
            SignatureErrorKind::NotAReturn => "return",
            SignatureErrorKind::NotAnArgument => "argument",
            SignatureErrorKind::FirstArgument => "first",
            SignatureErrorKind::NeedsFlag => "needs-flag",
            SignatureErrorKind::BadPointer => "pointer",
            SignatureErrorKind::KeyShape => "key",
        }
    }
}

/// A signature or typed key that is not canonical: what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureError {
    kind: SignatureErrorKind,
    offset: usize,
    message: String,
}

impl SignatureError {
    fn new(kind: SignatureErrorKind, offset: usize, message: String) -> SignatureError {
        SignatureError { kind, offset, message }
    }

    /// What is wrong.
    pub fn kind(&self) -> SignatureErrorKind {
        self.kind
    }

    /// The byte offset of the problem in the text that was parsed (the
    /// signature, or for [`parse_typed_key`] the whole key).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The message (also the `Display`), e.g.
    /// `"unknown type code 'double' at offset 0"`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error for the signature part of typed key `key`, which starts
    /// at byte `by`: the offset becomes the key's, the message names both.
    fn in_key(mut self, by: usize, signature: &str, key: &str) -> SignatureError {
        self.offset += by;
        self.message = format!("{} of signature {signature:?} in typed key {key:?}", self.message);
        self
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SignatureError {}

/// The character at byte `at`, described for a message (`' '`, `'\u{e9}'`).
fn describe(s: &str, at: usize) -> String {
    match s[at..].chars().next() {
        Some(c) if c.is_ascii_graphic() || c == ' ' => format!("'{c}'"),
        Some(c) => format!("'{}'", c.escape_unicode()),
        None => "the end".into(),
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn unexpected(&self, expected: &str) -> SignatureError {
        let at = self.at;
        match self.peek() {
            None => SignatureError::new(
                SignatureErrorKind::Unterminated,
                at,
                format!("signature ends at offset {at} where {expected} is expected"),
            ),
            Some(b' ' | b'\t' | b'\n' | b'\r') => SignatureError::new(
                SignatureErrorKind::UnexpectedChar,
                at,
                format!("unexpected whitespace {} at offset {at} (signatures have no spaces)", describe(self.s, at)),
            ),
            Some(_) => SignatureError::new(
                SignatureErrorKind::UnexpectedChar,
                at,
                format!("unexpected character {} at offset {at} where {expected} is expected", describe(self.s, at)),
            ),
        }
    }

    fn ty(&mut self) -> Result<Type, SignatureError> {
        let start = self.at;
        let mut depth = 0usize;
        while self.peek() == Some(b'*') {
            depth += 1;
            self.at += 1;
        }
        let word_at = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.at += 1;
        }
        if self.at == word_at {
            return Err(match self.peek() {
                None | Some(b',' | b')' | b'(' | b'!') => SignatureError::new(
                    SignatureErrorKind::MissingCode,
                    word_at,
                    format!("missing type code at offset {word_at}"),
                ),
                _ => self.unexpected("a type code"),
            });
        }
        if self.peek() == Some(b'+') {
            self.at += 1;
        }
        let word = &self.s[word_at..self.at];
        let base = match word {
            "p" => Base::VoidPtr,
            "O" => Base::Object,
            "O+" => Base::NewRef,
            "v" => Base::Void,
            _ => match Scalar::from_code(word) {
                Some(s) => Base::Scalar(s),
                None => {
                    let lower = word.to_ascii_lowercase();
                    let hint = if lower != word && Scalar::from_code(&lower).is_some() {
                        format!(" (codes are lower case: {lower})")
                    } else {
                        String::new()
                    };
                    return Err(SignatureError::new(
                        SignatureErrorKind::UnknownCode,
                        word_at,
                        format!("unknown type code '{word}' at offset {word_at}{hint}"),
                    ));
                }
            },
        };
        if depth > MAX_POINTER_DEPTH as usize {
            return Err(SignatureError::new(
                SignatureErrorKind::BadPointer,
                start,
                format!("more than {MAX_POINTER_DEPTH} pointer levels at offset {start}"),
            ));
        }
        let ty = Type { base, depth: depth as u8 };
        check_type(ty, start)?;
        Ok(ty)
    }
}

/// Parse and validate a signature (docs/spec.md §9). Accepts exactly the
/// canonical spellings: the result's `Display` equals `text`.
///
/// ```
/// use extensibletype_core::signature::{parse_signature, SignatureErrorKind};
/// assert!(parse_signature("O+(O)!t").is_ok());
/// assert_eq!(parse_signature("f64(f64)").unwrap_err().kind(), SignatureErrorKind::FirstArgument);
/// ```
pub fn parse_signature(text: &str) -> Result<Signature, SignatureError> {
    if text.is_empty() {
        return Err(SignatureError::new(SignatureErrorKind::Empty, 0, "empty signature".into()));
    }
    let mut p = Parser { s: text, b: text.as_bytes(), at: 0 };
    let ret_at = p.at;
    let ret = p.ty()?;
    if p.peek() != Some(b'(') {
        return Err(match p.peek() {
            None => SignatureError::new(
                SignatureErrorKind::Unterminated,
                p.at,
                format!("missing '(' after the return type at offset {}", p.at),
            ),
            _ => p.unexpected("'('"),
        });
    }
    p.at += 1;
    let mut args = Vec::new();
    let mut arg_at = Vec::new();
    loop {
        arg_at.push(p.at);
        args.push(p.ty()?);
        match p.peek() {
            Some(b',') => p.at += 1,
            Some(b')') => {
                p.at += 1;
                break;
            }
            None => {
                return Err(SignatureError::new(
                    SignatureErrorKind::Unterminated,
                    p.at,
                    format!("missing ')' at offset {}", p.at),
                ))
            }
            Some(_) => return Err(p.unexpected("',' or ')'")),
        }
    }
    let mut flag = Flag::None;
    let mut flag_at = 0;
    while p.at < text.len() {
        if p.peek() != Some(b'!') {
            return Err(SignatureError::new(
                SignatureErrorKind::Trailing,
                p.at,
                format!("unexpected {} after the signature at offset {} (only a flag, !t or !e, may follow ')')", describe(text, p.at), p.at),
            ));
        }
        let bang = p.at;
        p.at += 1;
        let this = match p.peek() {
            Some(b't') => Flag::Thread,
            Some(b'e') => Flag::Raises,
            None => {
                return Err(SignatureError::new(
                    SignatureErrorKind::UnknownFlag,
                    bang,
                    format!("'!' without a flag at offset {bang} (flags are !t and !e)"),
                ))
            }
            Some(_) => {
                let end = text[p.at..].char_indices().nth(1).map_or(text.len(), |(i, _)| p.at + i);
                return Err(SignatureError::new(
                    SignatureErrorKind::UnknownFlag,
                    bang,
                    format!("unknown flag '!{}' at offset {bang} (flags are !t and !e)", &text[p.at..end]),
                ));
            }
        };
        p.at += 1;
        if flag != Flag::None {
            return Err(SignatureError::new(
                SignatureErrorKind::TwoFlags,
                bang,
                format!(
                    "more than one flag: '{}' at offset {flag_at}, then '{}' at offset {bang} (!e implies !t; give one)",
                    flag.suffix(),
                    this.suffix()
                ),
            ));
        }
        flag = this;
        flag_at = bang;
    }
    // The rules beyond syntax, with offsets into `text`.
    if !ret.is_return() {
        return Err(SignatureError::new(
            SignatureErrorKind::NotAReturn,
            ret_at,
            format!("'{ret}' cannot be returned (offset {ret_at}): O is a borrowed argument; a returned object is O+ (a new reference)"),
        ));
    }
    for (i, (arg, at)) in args.iter().zip(&arg_at).enumerate() {
        if !arg.is_argument() {
            return Err(SignatureError::new(
                SignatureErrorKind::NotAnArgument,
                *at,
                format!("'{arg}' is a return type only, not an argument (at offset {at})"),
            ));
        }
        if i == 0 && *arg != Type::of(Base::Object) {
            return Err(SignatureError::new(
                SignatureErrorKind::FirstArgument,
                *at,
                format!("a method's first argument must be O (the object itself), not '{arg}' at offset {at}"),
            ));
        }
    }
    let sig = Signature { ret, args, flag };
    sig.validate()?;
    Ok(sig)
}

/// A parsed typed key `"<interface>:<method>#<signature>"`, borrowing the
/// key's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypedKey<'a> {
    /// Everything before the last `:` of the name (`"geom.Shape.v1"`).
    pub interface: &'a str,
    /// The method name, an identifier (`"area"`).
    pub method: &'a str,
    /// The signature (`f64(O)`).
    pub signature: Signature,
}

impl TypedKey<'_> {
    /// The name part, `"<interface>:<method>"`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.interface, self.method)
    }
}

impl fmt::Display for TypedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}#{}", self.interface, self.method, self.signature)
    }
}

fn is_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c == b'_' || c.is_ascii_alphabetic()) && b.all(|c| c == b'_' || c.is_ascii_alphanumeric())
}

/// Split and check a name `"<interface>:<method>"`: the method (after the
/// last `:`) is `[A-Za-z_][A-Za-z0-9_]*`; the interface is not empty and
/// has no `#`, whitespace or control characters. (The `<ns>.<Interface>.v<N>`
/// shape of the interface is a convention, not checked.)
fn split_name(name: &str) -> Result<(&str, &str), SignatureError> {
    let key_err = |at: usize, msg: String| SignatureError::new(SignatureErrorKind::KeyShape, at, msg);
    let Some((interface, method)) = name.rsplit_once(':') else {
        return Err(key_err(0, format!("method name {name:?} is not '<interface>:<method>' (no ':')")));
    };
    if interface.is_empty() {
        return Err(key_err(0, format!("method name {name:?} has an empty interface before ':'")));
    }
    if let Some((at, c)) = interface.char_indices().find(|&(_, c)| c == '#' || c.is_whitespace() || c.is_control()) {
        return Err(key_err(at, format!("interface {interface:?} contains {:?} at offset {at}", c)));
    }
    if !is_identifier(method) {
        let at = interface.len() + 1;
        return Err(key_err(
            at,
            format!("method {method:?} (offset {at}) is not an identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        ));
    }
    Ok((interface, method))
}

/// Parse and validate a typed key `"<interface>:<method>#<signature>"`.
/// Error offsets count from the start of the key.
///
/// ```
/// use extensibletype_core::signature::parse_typed_key;
/// let k = parse_typed_key("geom.Shape.v1:scale#v(O,f64)!e").unwrap();
/// assert_eq!(k.method, "scale");
/// assert_eq!(k.signature.to_string(), "v(O,f64)!e");
/// assert!(parse_typed_key("geom.Shape.v1:area").is_err()); // untyped
/// ```
pub fn parse_typed_key(key: &str) -> Result<TypedKey<'_>, SignatureError> {
    let Some((name, sig)) = key.split_once('#') else {
        return Err(SignatureError::new(
            SignatureErrorKind::KeyShape,
            0,
            format!("{key:?} is not a typed key (no '#<signature>')"),
        ));
    };
    let (interface, method) = split_name(name)?;
    let signature = parse_signature(sig).map_err(|e| e.in_key(name.len() + 1, sig, key))?;
    Ok(TypedKey { interface, method, signature })
}

/// The canonical typed key for `name` (`"<interface>:<method>"`) and
/// `signature`: `"<name>#<signature>"`, after checking both.
///
/// ```
/// use extensibletype_core::signature::method_key;
/// assert_eq!(method_key("geom.Shape.v1:area", "f64(O)").unwrap(), "geom.Shape.v1:area#f64(O)");
/// assert!(method_key("geom.Shape.v1:area", "f64( O )").is_err());
/// ```
pub fn method_key(name: &str, signature: &str) -> Result<String, SignatureError> {
    split_name(name)?;
    let sig = parse_signature(signature)?;
    Ok(format!("{name}#{sig}"))
}

/// The method name of a typed key (`"area"` for `"geom.Shape.v1:area#f64(O)"`),
/// or `None` for an untyped key (no `#`) or one whose name has no `:`.
/// Does not validate the signature (use [`parse_typed_key`] for that).
pub fn method_name_of(key: &str) -> Option<&str> {
    let (name, _) = key.split_once('#')?;
    let (_, method) = name.rsplit_once(':')?;
    Some(method)
}

/// Whether `key` is typed (contains `#`): such keys must be canonical typed keys.
pub fn is_typed_key(key: &[u8]) -> bool {
    key.contains(&b'#')
}

// --- compile time ------------------------------------------------------------

/// The longest signature [`typed_id_const`] can render, in bytes (a method
/// of about twenty arguments).
pub const MAX_CONST_SIGNATURE: usize = 256;

/// How a C function type becomes a signature (for ids derived from Rust
/// `extern "C" fn` types, where the flag and the out-pointer are not part
/// of the type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Convention {
    /// No flag: the signature is the function type (`f64(O)` from
    /// `fn(*mut PyObject) -> f64`).
    Plain,
    /// `!t`: the function type, called with a thread state; a
    /// `*mut PyObject` return is `O+`.
    Thread,
    /// `!e` with no out-pointer: an `i32` return gives `v(...)!e`, a
    /// `*mut PyObject` return `O+(...)!e`.
    Raises,
    /// `!e` with a trailing out-pointer: `fn(*mut PyObject, f64, *mut f64) -> i32`
    /// is `f64(O,f64)!e`.
    RaisesOut,
}

const fn same_base(a: Base, b: Base) -> bool {
    match (a, b) {
        (Base::Scalar(x), Base::Scalar(y)) => x as u8 == y as u8,
        (Base::VoidPtr, Base::VoidPtr)
        | (Base::Object, Base::Object)
        | (Base::NewRef, Base::NewRef)
        | (Base::Void, Base::Void) => true,
        _ => false,
    }
}

const fn same_type(a: Type, b: Type) -> bool {
    a.depth == b.depth && same_base(a.base, b.base)
}

/// Panic (a compile error in a `const`) unless `name` is `<interface>:<method>`
/// with a non-empty interface free of `#` and ASCII whitespace, and an
/// identifier as method.
pub const fn check_name_const(name: &str) {
    let b = name.as_bytes();
    let mut colon = b.len();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b':' => colon = i,
            b'#' => panic!("a typed method name has no '#': it is '<interface>:<method>'"),
            b' ' | b'\t' | b'\n' | b'\r' | 0 => panic!("a typed method name has no whitespace"),
            _ => {}
        }
        i += 1;
    }
    if colon == b.len() {
        panic!("a typed method name is '<interface>:<method>' (no ':' found)");
    }
    if colon == 0 {
        panic!("a typed method name needs an interface before ':'");
    }
    let mut j = colon + 1;
    if j == b.len() || b[j].is_ascii_digit() {
        panic!("the method of a typed method name is an identifier ([A-Za-z_][A-Za-z0-9_]*)");
    }
    while j < b.len() {
        if !(b[j] == b'_' || b[j].is_ascii_alphanumeric()) {
            panic!("the method of a typed method name is an identifier ([A-Za-z_][A-Za-z0-9_]*)");
        }
        j += 1;
    }
}

/// Panic (a compile error in a `const`) unless `ret(args)flag` follows the
/// rules of docs/spec.md (what [`Signature::validate`] checks at run time).
pub const fn check_signature_const(ret: Type, args: &[Type], flag: Flag) {
    if ret.depth > MAX_POINTER_DEPTH || (ret.depth > 0 && !matches!(ret.base, Base::Scalar(_) | Base::VoidPtr)) {
        panic!("the return type is not a valid signature type");
    }
    if matches!(ret.base, Base::Object) {
        panic!("O cannot be returned: a returned object is O+ (*mut PyObject with a flag)");
    }
    if matches!(ret.base, Base::NewRef) && matches!(flag, Flag::None) {
        panic!("O+ (a returned *mut PyObject) needs a flag: use Convention::Thread or Convention::Raises");
    }
    if args.is_empty() || !same_type(args[0], Type::of(Base::Object)) {
        panic!("a method's first argument must be O (*mut PyObject)");
    }
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if a.depth > MAX_POINTER_DEPTH || (a.depth > 0 && !matches!(a.base, Base::Scalar(_) | Base::VoidPtr)) {
            panic!("an argument type is not a valid signature type");
        }
        if matches!(a.base, Base::Void | Base::NewRef) {
            panic!("v and O+ are return types only");
        }
        i += 1;
    }
}

/// The signature a C function type (`c_ret`, `c_args`) has under
/// `convention`: `(ret, number of args, flag)` — the args are the first
/// `number` of `c_args`. Panics (a compile error in a `const`) when the
/// function type does not fit the convention.
pub const fn signature_of_const(c_ret: Type, c_args: &[Type], convention: Convention) -> (Type, usize, Flag) {
    let n = c_args.len();
    let i32_ = Type::scalar(Scalar::I32);
    match convention {
        Convention::Plain => {
            if matches!(c_ret.base, Base::NewRef) {
                panic!("a *mut PyObject return (O+) needs Convention::Thread or Convention::Raises");
            }
            (c_ret, n, Flag::None)
        }
        Convention::Thread => (c_ret, n, Flag::Thread),
        Convention::Raises => {
            if matches!(c_ret.base, Base::NewRef) {
                (c_ret, n, Flag::Raises)
            } else if same_type(c_ret, i32_) {
                (Type::of(Base::Void), n, Flag::Raises)
            } else {
                panic!("a !e function returns i32 (0 or -1 with an exception set) or *mut PyObject (O+)");
            }
        }
        Convention::RaisesOut => {
            if !same_type(c_ret, i32_) {
                panic!("a !e function with an out-pointer returns i32 (0 or -1 with an exception set)");
            }
            if n < 2 || c_args[n - 1].depth == 0 {
                panic!("Convention::RaisesOut needs a trailing out-pointer argument (*mut T)");
            }
            let out = c_args[n - 1];
            (Type { base: out.base, depth: out.depth - 1 }, n - 1, Flag::Raises)
        }
    }
}

const fn push(mut buf: [u8; MAX_CONST_SIGNATURE], mut len: usize, s: &str) -> ([u8; MAX_CONST_SIGNATURE], usize) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if len == MAX_CONST_SIGNATURE {
            panic!("signature longer than MAX_CONST_SIGNATURE");
        }
        buf[len] = b[i];
        len += 1;
        i += 1;
    }
    (buf, len)
}

const fn push_type(buf: [u8; MAX_CONST_SIGNATURE], len: usize, t: Type) -> ([u8; MAX_CONST_SIGNATURE], usize) {
    let (mut buf, mut len) = (buf, len);
    let mut d = 0;
    while d < t.depth {
        (buf, len) = push(buf, len, "*");
        d += 1;
    }
    push(buf, len, t.base_code())
}

/// The canonical text of `ret(args)flag` in a fixed buffer: `(bytes, len)`.
/// Checks it first ([`check_signature_const`]).
pub const fn render_const(ret: Type, args: &[Type], flag: Flag) -> ([u8; MAX_CONST_SIGNATURE], usize) {
    check_signature_const(ret, args, flag);
    let (mut buf, mut len) = push_type([0; MAX_CONST_SIGNATURE], 0, ret);
    (buf, len) = push(buf, len, "(");
    let mut i = 0;
    while i < args.len() {
        if i > 0 {
            (buf, len) = push(buf, len, ",");
        }
        (buf, len) = push_type(buf, len, args[i]);
        i += 1;
    }
    (buf, len) = push(buf, len, ")");
    push(buf, len, flag.suffix())
}

/// The id of the typed key `name#ret(args)flag`, at compile time:
/// `typed_id_const("geom.Shape.v1:area", Type::scalar(Scalar::F64), &[Type::of(Base::Object)], Flag::None)`
/// is `prehash("geom.Shape.v1:area#f64(O)")`.
///
/// # Panics
/// (A compile error when evaluated in a `const`.) When `name` is not
/// `<interface>:<method>` or the signature breaks the rules of docs/spec.md.
pub const fn typed_id_const(name: &str, ret: Type, args: &[Type], flag: Flag) -> u64 {
    check_name_const(name);
    let (buf, len) = render_const(ret, args, flag);
    let (sig, _) = buf.split_at(len);
    crate::key::prehash_const_parts(&[name.as_bytes(), b"#", sig])
}

/// The id of the typed key for a C function type (`c_ret`, `c_args`) under
/// `convention` ([`signature_of_const`] then [`typed_id_const`]).
///
/// # Panics
/// As [`typed_id_const`] and [`signature_of_const`].
pub const fn typed_id_of_c_function(name: &str, c_ret: Type, c_args: &[Type], convention: Convention) -> u64 {
    let (ret, n, flag) = signature_of_const(c_ret, c_args, convention);
    let (args, _) = c_args.split_at(n);
    typed_id_const(name, ret, args, flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: [&str; 8] =
        ["f64(O)", "v(O,f64)", "i64(O,*f64,i64)", "O+(O)!t", "f64(O,f64)!e", "v(O)!e", "b(O,p)", "c128(O,c128)"];

    #[test]
    fn spec_canonical() {
        for s in CANONICAL {
            let sig = parse_signature(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sig.to_string(), s);
        }
    }

    #[test]
    fn spec_rejected() {
        use SignatureErrorKind as K;
        let cases = [
            ("f64( O )", K::UnexpectedChar),
            ("double(O)", K::UnknownCode),
            ("f64(O)!t!e", K::TwoFlags),
            ("f64(O)!e!t", K::TwoFlags),
            ("F64(O)", K::UnknownCode),
            ("f64(O,v)", K::NotAnArgument),
            ("f64(O", K::Unterminated),
            ("f64(O,O+)", K::NotAnArgument),
            ("O(O)", K::NotAReturn),
            ("O+(O)", K::NeedsFlag),
            ("", K::Empty),
            ("f64(O)!x", K::UnknownFlag),
            ("f64(f64)", K::FirstArgument),
            ("f64()", K::MissingCode),
            ("f64(O,)", K::MissingCode),
            ("f64(O)x", K::Trailing),
            ("f64", K::Unterminated),
            ("*O(O)", K::BadPointer),
            ("f64(O,*O)", K::BadPointer),
            ("v(O,*v)", K::BadPointer),
            ("f64(O)!", K::UnknownFlag),
            ("f64(O)!t!t", K::TwoFlags),
            ("f64(O) ", K::Trailing),
            ("f64(O,*********f64)", K::BadPointer),
        ];
        for (s, kind) in cases {
            let e = parse_signature(s).expect_err(s);
            assert_eq!(e.kind(), kind, "{s:?}: {e}");
            assert!(!e.message().is_empty());
        }
        assert_eq!(parse_signature("double(O)").unwrap_err().to_string(), "unknown type code 'double' at offset 0");
        assert!(parse_signature("F64(O)").unwrap_err().to_string().contains("lower case"));
        assert!(parse_signature("f64( O )").unwrap_err().to_string().contains("offset 4"));
    }

    #[test]
    fn pointers_nest() {
        for s in ["v(O,**f64)", "*p(O,*p)", "********u8(O)"] {
            assert_eq!(parse_signature(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn typed_keys() {
        let k = parse_typed_key("geom.Shape.v1:area#f64(O)").unwrap();
        assert_eq!((k.interface, k.method, k.signature.to_string()), ("geom.Shape.v1", "area", "f64(O)".into()));
        assert_eq!(k.to_string(), "geom.Shape.v1:area#f64(O)");
        for bad in ["geom.Shape.v1:area", "area#f64(O)", ":area#f64(O)", "g:1x#f64(O)", "g:a-b#f64(O)", "g:a#f64(O)#", "g h:a#f64(O)", "g:a#"] {
            assert!(parse_typed_key(bad).is_err(), "{bad}");
        }
        let e = parse_typed_key("g:a#f64( O )").unwrap_err();
        assert_eq!(e.offset(), 8, "{e}");
        assert!(e.to_string().contains("offset 4") && e.to_string().contains("in typed key"), "{e}");
        assert_eq!(method_name_of("geom.Shape.v1:area#f64(O)"), Some("area"));
        assert_eq!(method_name_of("geom.Shape.v1:area"), None);
        assert_eq!(method_key("a.b.v1:m", "v(O)!e").unwrap(), "a.b.v1:m#v(O)!e");
        assert_eq!(method_key("a.b.v1:m#x", "v(O)").unwrap_err().kind(), SignatureErrorKind::KeyShape);
    }

    #[test]
    fn const_ids() {
        use crate::prehash;
        const O: Type = Type::of(Base::Object);
        const F64: Type = Type::scalar(Scalar::F64);
        const AREA: u64 = typed_id_const("geom.Shape.v1:area", F64, &[O], Flag::None);
        assert_eq!(AREA, prehash("geom.Shape.v1:area#f64(O)"));
        const AT: u64 = typed_id_of_c_function("g.S.v1:at", Type::scalar(Scalar::I32), &[O, F64, F64.pointer()], Convention::RaisesOut);
        assert_eq!(AT, prehash("g.S.v1:at#f64(O,f64)!e"));
        const CHECK: u64 = typed_id_of_c_function("g.S.v1:check", Type::scalar(Scalar::I32), &[O], Convention::Raises);
        assert_eq!(CHECK, prehash("g.S.v1:check#v(O)!e"));
        const NEW: u64 = typed_id_of_c_function("g.S.v1:new", Type::of(Base::NewRef), &[O], Convention::Thread);
        assert_eq!(NEW, prehash("g.S.v1:new#O+(O)!t"));
        let (buf, len) = render_const(Type::scalar(Scalar::I64), &[O, F64.pointer(), Type::scalar(Scalar::I64)], Flag::None);
        assert_eq!(&buf[..len], b"i64(O,*f64,i64)");
        assert!(std::panic::catch_unwind(|| check_name_const("no-colon")).is_err());
        assert!(std::panic::catch_unwind(|| check_name_const("a:1x")).is_err());
        assert!(std::panic::catch_unwind(|| check_signature_const(F64, &[F64], Flag::None)).is_err());
    }

    #[test]
    fn validate_assembled() {
        let bad = Signature { ret: Type::of(Base::NewRef), args: vec![Type::of(Base::Object)], flag: Flag::None };
        assert_eq!(bad.validate().unwrap_err().kind(), SignatureErrorKind::NeedsFlag);
        let ok = Signature { ret: Type::scalar(Scalar::F64).pointer(), args: vec![Type::of(Base::Object)], flag: Flag::Raises };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.to_string(), "*f64(O)!e");
    }
}
