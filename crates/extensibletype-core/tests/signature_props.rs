//! Property tests of the typed-method signature grammar (docs/spec.md,
//! typed methods): every signature built from the grammar renders to a
//! string that parses back to it; every accepted string re-renders
//! identically; arbitrary strings never panic.

use extensibletype_core::signature::{parse_signature, parse_typed_key, Base, Flag, Scalar, Signature, Type};
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Type> {
    let base = prop_oneof![
        proptest::sample::select(Scalar::ALL.to_vec()).prop_map(Base::Scalar),
        Just(Base::VoidPtr),
    ];
    (base, 0u8..=3).prop_map(|(base, depth)| Type { base, depth })
}

fn signature() -> impl Strategy<Value = Signature> {
    let ret = prop_oneof![value(), Just(Type::of(Base::Void)), Just(Type::of(Base::NewRef))];
    let arg = prop_oneof![value(), Just(Type::of(Base::Object))];
    let flag = prop_oneof![Just(Flag::None), Just(Flag::Thread), Just(Flag::Raises)];
    (ret, proptest::collection::vec(arg, 0..5), flag).prop_map(|(ret, rest, flag)| {
        let flag = if ret.base == Base::NewRef && flag == Flag::None { Flag::Thread } else { flag };
        let mut args = vec![Type::of(Base::Object)];
        args.extend(rest);
        Signature { ret, args, flag }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn built_signatures_round_trip(sig in signature()) {
        let text = sig.to_string();
        let parsed = parse_signature(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&parsed, &sig);
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn grammar_alphabet_never_panics(s in "[iufcbpvO+*(),!te0-9 a-zA-Z#:]{0,24}") {
        if let Ok(sig) = parse_signature(&s) {
            prop_assert_eq!(sig.to_string(), s.clone());
        }
        if let Ok(key) = parse_typed_key(&s) {
            prop_assert_eq!(key.to_string(), s);
        }
    }

    #[test]
    fn any_string_never_panics(s in any::<String>()) {
        if let Ok(sig) = parse_signature(&s) {
            prop_assert_eq!(sig.to_string(), s.clone());
        }
        let _ = parse_typed_key(&s);
        let key = format!("a.b.v1:m#{s}");
        if let Ok(k) = parse_typed_key(&key) {
            prop_assert_eq!(k.to_string(), key);
        }
    }

    #[test]
    fn mutations_of_canonical_never_panic(sig in signature(), at in any::<prop::sample::Index>(), c in any::<char>()) {
        let text = sig.to_string();
        let i = at.index(text.len() + 1);
        let mut s = text.clone();
        s.insert(i, c);
        if let Ok(p) = parse_signature(&s) {
            prop_assert_eq!(p.to_string(), s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The compile-time renderer and id agree with `Display` and `prehash`.
    #[test]
    fn const_render_and_id_agree(sig in signature()) {
        use extensibletype_core::signature::{render_const, typed_id_const};
        let (buf, len) = render_const(sig.ret, &sig.args, sig.flag);
        let text = sig.to_string();
        prop_assert_eq!(&buf[..len], text.as_bytes());
        let key = format!("demo.props.v1:m#{sig}");
        prop_assert_eq!(typed_id_const("demo.props.v1:m", sig.ret, &sig.args, sig.flag), extensibletype_core::prehash(&key));
    }
}
