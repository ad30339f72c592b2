/*
 * extensibletype.hpp — C++17 layer over extensibletype.h: compile-time ids
 * and typed method lookup (docs/spec.md §1.1, typed method keys; docs/c-api.md, "C++").
 *
 *   #include <Python.h>
 *   #include "extensibletype.hpp"       // includes extensibletype.h
 *   namespace et = extensibletype;
 *
 *   // ids at compile time (md5 in constexpr):
 *   static_assert(et::prehash("a") == 0xa8b6f1c0b975c10cu);
 *   constexpr auto AREA = et::method_id<double(PyObject *)>("geom.Shape.v1:area");
 *   //   == et::prehash("geom.Shape.v1:area#f64(O)"): the signature comes from the type
 *
 *   // after ExtType_Import() succeeded; no GIL needed for the lookup:
 *   if (auto *area = et::find_method<double(PyObject *)>(obj, AREA)) {
 *       double a = area(obj);          // flagless: may be called without the GIL
 *   } else {
 *       // miss (absent, other signature, masked by a Python override):
 *       // call the Python method "area" instead
 *   }
 *
 * The signature `Sig` is the method's *logical* C++ function type; the flag
 * (a second template argument) says how it is called:
 *
 *   flag                          key suffix  C type of the slot
 *   (none) extensibletype::no_flag   ""       Sig itself; may be called with no thread state, never raises
 *   extensibletype::needs_thread     "!t"     Sig itself; call with an attached thread state (the GIL)
 *   extensibletype::may_raise        "!e"     R(O, A...) becomes std::int32_t(O, A..., R *out)
 *                                             (0, or -1 with an exception set; no out-pointer for
 *                                             void); PyObject *(O, A...) stays as is (NULL = error)
 *
 *   method_id<double(PyObject *, double), et::may_raise>("geom.Shape.v1:scaled")
 *     == prehash("geom.Shape.v1:scaled#f64(O,f64)!e");
 *   find_method<double(PyObject *, double), et::may_raise>(obj, id)
 *     -> std::int32_t (*)(PyObject *, double, double *)   (= c_function_t<Sig, Flag> *)
 *
 * Types map by width, never by C name (the signature grammar of the spec):
 * double f64, float f32, bool b, other integral types i8..i64 / u8..u64 by
 * sizeof and std::is_signed (long, long long, Py_ssize_t: the width they have
 * on the target), std::complex<double> c128, std::complex<float> c64, void *
 * p, T * *X (const ignored), PyObject * O (arguments; the first argument must
 * be PyObject *), void v and PyObject * O+ (returns; O+ needs a flag). Any
 * other type is a compile error. A name that is not "<interface>:<method>"
 * (method an identifier, no '#') gives id 0, which no lookup ever finds.
 */
#ifndef EXTENSIBLETYPE_HPP
#define EXTENSIBLETYPE_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
#  if !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L)
#    error "extensibletype.hpp needs C++17 (include extensibletype.h from C)"
#  endif
#endif

#include "extensibletype.h"

#include <complex>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace extensibletype {

// --- prehash: md5 at compile time ------------------------------------------

namespace detail {

inline constexpr std::uint32_t md5_k[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u, 0xfd469501u,
    0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u,
    0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au,
    0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u,
    0x289b7ec6u, 0xeaa127fau, 0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};

inline constexpr unsigned md5_r[16] = {7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21};

constexpr std::uint32_t rotl(std::uint32_t x, unsigned c) noexcept
{
    return (x << c) | (x >> (32u - c));
}

// Streaming md5 (RFC 1321), constexpr: the key is hashed in pieces (name,
// '#', signature) without being assembled.
class md5 {
public:
    constexpr void update(std::string_view s) noexcept
    {
        for (char c : s) {
            put(static_cast<unsigned char>(c));
        }
    }

    // The first 8 bytes of the digest read little-endian (= prehash).
    constexpr std::uint64_t first8() noexcept
    {
        std::uint64_t bits = length_ * 8u;
        put(0x80u);
        while (length_ % 64u != 56u) {
            put(0u);
        }
        for (unsigned i = 0; i < 8; i++) {
            put(static_cast<unsigned char>(bits >> (8u * i)));
        }
        return static_cast<std::uint64_t>(a_) | (static_cast<std::uint64_t>(b_) << 32);
    }

private:
    constexpr void put(unsigned char byte) noexcept
    {
        block_[length_ % 64u] = byte;
        length_++;
        if (length_ % 64u == 0) {
            compress();
        }
    }

    constexpr void compress() noexcept
    {
        std::uint32_t m[16] = {};
        for (unsigned i = 0; i < 16; i++) {
            m[i] = static_cast<std::uint32_t>(block_[4 * i]) | (static_cast<std::uint32_t>(block_[4 * i + 1]) << 8) |
                   (static_cast<std::uint32_t>(block_[4 * i + 2]) << 16) |
                   (static_cast<std::uint32_t>(block_[4 * i + 3]) << 24);
        }
        std::uint32_t a = a_, b = b_, c = c_, d = d_;
        for (unsigned i = 0; i < 64; i++) {
            std::uint32_t f = 0;
            unsigned g = 0;
            if (i < 16) {
                f = (b & c) | (~b & d);
                g = i;
            } else if (i < 32) {
                f = (d & b) | (~d & c);
                g = (5 * i + 1) % 16;
            } else if (i < 48) {
                f = b ^ c ^ d;
                g = (3 * i + 5) % 16;
            } else {
                f = c ^ (b | ~d);
                g = (7 * i) % 16;
            }
            std::uint32_t next = b + rotl(a + f + md5_k[i] + m[g], md5_r[(i / 16) * 4 + i % 4]);
            a = d;
            d = c;
            c = b;
            b = next;
        }
        a_ += a;
        b_ += b;
        c_ += c;
        d_ += d;
    }

    std::uint32_t a_ = 0x67452301u, b_ = 0xefcdab89u, c_ = 0x98badcfeu, d_ = 0x10325476u;
    unsigned char block_[64] = {};
    std::uint64_t length_ = 0;
};

}  // namespace detail

// The id of a key: the first 8 bytes of md5(key) read little-endian (the
// runtime's prehash, ExtType_Prehash). Usable in constant expressions.
constexpr std::uint64_t prehash(std::string_view key) noexcept
{
    detail::md5 h;
    h.update(key);
    return h.first8();
}

// --- flags -----------------------------------------------------------------

// No flag: the method may be called with no thread state and never raises.
struct no_flag {
    static constexpr std::string_view suffix = "";
};
// "!t": the caller holds an attached thread state (the GIL on GIL builds).
struct needs_thread {
    static constexpr std::string_view suffix = "!t";
};
// "!e": may raise (implies !t). R(O, A...) is called as
// std::int32_t(O, A..., R *out): 0, or -1 with an exception set.
struct may_raise {
    static constexpr std::string_view suffix = "!e";
};

// --- signatures ------------------------------------------------------------

namespace detail {

template <class T>
inline constexpr bool always_false = false;

template <class T>
struct is_complex : std::false_type {};
template <class T>
struct is_complex<std::complex<T>> : std::true_type {};

template <class Flag>
inline constexpr bool is_flag =
    std::is_same_v<Flag, no_flag> || std::is_same_v<Flag, needs_thread> || std::is_same_v<Flag, may_raise>;

// A signature's text, built at compile time.
struct sig_text {
    char data[256] = {};
    std::size_t len = 0;

    constexpr void put(char c) noexcept { data[len++] = c; }
    constexpr void put(std::string_view s) noexcept
    {
        for (char c : s) {
            put(c);
        }
    }
    constexpr std::string_view view() const noexcept { return std::string_view(data, len); }
};

constexpr void put_int(sig_text &out, bool is_signed, std::size_t size) noexcept
{
    out.put(is_signed ? 'i' : 'u');
    switch (size) {
    case 1: out.put("8"); break;
    case 2: out.put("16"); break;
    case 4: out.put("32"); break;
    default: out.put("64"); break;
    }
}

// How many '*' the code of T starts with (void ** is *p: one).
template <class T>
constexpr unsigned pointer_depth() noexcept
{
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_pointer_v<U> && !std::is_void_v<std::remove_pointer_t<U>>) {
        return 1 + pointer_depth<std::remove_pointer_t<U>>();
    } else {
        return 0;
    }
}

// The deepest pointer nesting a signature may spell (********f64).
inline constexpr unsigned max_pointer_depth = 8;

// The code of a value type: a scalar, p, or *X.
template <class T>
constexpr void put_value(sig_text &out) noexcept
{
    static_assert(pointer_depth<T>() <= max_pointer_depth, "extensibletype: at most 8 levels of pointers (*X)");
    using U = std::remove_cv_t<T>;
    if constexpr (std::is_same_v<U, bool>) {
        out.put('b');
    } else if constexpr (std::is_same_v<U, double>) {
        out.put("f64");
    } else if constexpr (std::is_same_v<U, float>) {
        out.put("f32");
    } else if constexpr (std::is_same_v<U, std::complex<double>>) {
        out.put("c128");
    } else if constexpr (std::is_same_v<U, std::complex<float>>) {
        out.put("c64");
    } else if constexpr (std::is_integral_v<U>) {
        static_assert(sizeof(U) == 1 || sizeof(U) == 2 || sizeof(U) == 4 || sizeof(U) == 8,
                      "extensibletype: integers are 8, 16, 32 or 64 bits wide");
        put_int(out, std::is_signed_v<U>, sizeof(U));
    } else if constexpr (std::is_pointer_v<U>) {
        using P = std::remove_cv_t<std::remove_pointer_t<U>>;
        if constexpr (std::is_void_v<P>) {
            out.put('p');
        } else {
            static_assert(!std::is_same_v<P, PyObject>,
                          "extensibletype: PyObject * is O (an argument) or O+ (a return), never *O");
            static_assert(std::is_arithmetic_v<P> || is_complex<P>::value || std::is_pointer_v<P>,
                          "extensibletype: *X points to a scalar or a pointer");
            out.put('*');
            put_value<P>(out);
        }
    } else {
        static_assert(always_false<T>,
                      "extensibletype: no signature code for this type (scalars, complex, pointers, PyObject *)");
    }
}

template <class A>
constexpr void put_arg(sig_text &out) noexcept
{
    if constexpr (std::is_same_v<std::remove_cv_t<A>, PyObject *>) {
        out.put('O');
    } else {
        put_value<A>(out);
    }
}

template <class Flag, class R, class First, class... Args>
constexpr sig_text make_signature() noexcept
{
    static_assert(is_flag<Flag>, "extensibletype: the flag is no_flag, needs_thread or may_raise");
    static_assert(std::is_same_v<std::remove_cv_t<First>, PyObject *>,
                  "extensibletype: a method's first argument is PyObject * (O, the object itself)");
    sig_text out;
    if constexpr (std::is_void_v<R>) {
        out.put('v');
    } else if constexpr (std::is_same_v<std::remove_cv_t<R>, PyObject *>) {
        static_assert(!std::is_same_v<Flag, no_flag>,
                      "extensibletype: a PyObject * return (O+, a new reference) needs a flag: "
                      "needs_thread or may_raise");
        out.put("O+");
    } else {
        put_value<R>(out);
    }
    out.put("(O");
    (((void)out.put(','), put_arg<Args>(out)), ...);
    out.put(')');
    out.put(Flag::suffix);
    return out;
}

template <class Sig, class Flag>
struct signature_of {
    static_assert(always_false<Sig>, "extensibletype: Sig is a function type R(PyObject *, Args...)");
};
template <class Flag, class R, class... Args>
struct signature_of<R(Args...), Flag> {
    static_assert(sizeof...(Args) > 0, "extensibletype: a method takes the object (PyObject *) first");
    static constexpr sig_text text = make_signature<Flag, R, Args...>();
};
template <class Flag, class R, class... Args>
struct signature_of<R(Args...) noexcept, Flag> : signature_of<R(Args...), Flag> {};

// The C function type of a slot, from the logical signature and the flag.
template <class Sig, class Flag>
struct c_function {
    using type = Sig;
};
template <class R, class... Args>
struct c_function<R(Args...), may_raise> {
    using type = std::conditional_t<std::is_same_v<std::remove_cv_t<R>, PyObject *>, PyObject *(Args...),
                                    std::conditional_t<std::is_void_v<R>, std::int32_t(Args...),
                                                       std::int32_t(Args..., std::remove_cv_t<R> *)>>;
};
template <class R, class... Args>
struct c_function<R(Args...) noexcept, may_raise> {
    using type = std::conditional_t<std::is_same_v<std::remove_cv_t<R>, PyObject *>, PyObject *(Args...) noexcept,
                                    std::conditional_t<std::is_void_v<R>, std::int32_t(Args...) noexcept,
                                                       std::int32_t(Args..., std::remove_cv_t<R> *) noexcept>>;
};

constexpr bool is_ident_start(char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

constexpr bool is_ident_char(char c) noexcept
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

// "<interface>:<method>": the method (after the last ':') an identifier; the
// interface not empty, without '#', ASCII spaces or control characters.
constexpr bool valid_name(std::string_view name) noexcept
{
    std::size_t colon = name.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 >= name.size() ||
        !is_ident_start(name[colon + 1])) {
        return false;
    }
    for (std::size_t i = 0; i < colon; i++) {
        auto c = static_cast<unsigned char>(name[i]);
        if (c == '#' || c == ' ' || c < 0x20u || c == 0x7fu) {
            return false;
        }
    }
    for (std::size_t i = colon + 2; i < name.size(); i++) {
        if (!is_ident_char(name[i])) {
            return false;
        }
    }
    return true;
}

}  // namespace detail

// The canonical signature of `Sig` with `Flag`, e.g. "f64(O,f64)!e".
template <class Sig, class Flag = no_flag>
constexpr std::string_view signature() noexcept
{
    return detail::signature_of<Sig, Flag>::text.view();
}

// The C function type a slot with signature `Sig` and `Flag` holds
// (Sig itself, except for may_raise: see the top of this file).
template <class Sig, class Flag = no_flag>
using c_function_t = typename detail::c_function<Sig, Flag>::type;

// The id of the typed key "<name>#<signature of Sig with Flag>"; name is
// "<namespace>.<Interface>.v<N>:<method>". 0 (never found) when name is not
// of that form.
template <class Sig, class Flag = no_flag>
constexpr std::uint64_t method_id(std::string_view name) noexcept
{
    if (!detail::valid_name(name)) {
        return 0;
    }
    detail::md5 h;
    h.update(name);
    h.update("#");
    h.update(signature<Sig, Flag>());
    return h.first8();
}

// The typed method `id` of type(obj) as a pointer to its C function, or
// nullptr when absent (or masked by a Python override, or registered under
// another signature: that is another id). No GIL needed for the lookup; the
// caller holds a strong reference to obj. ExtType_Import() must have
// succeeded. `id` must come from method_id<Sig, Flag> (or a typed_method).
template <class Sig, class Flag = no_flag>
inline c_function_t<Sig, Flag> *find_method(PyObject *obj, std::uint64_t id) noexcept
{
    return reinterpret_cast<c_function_t<Sig, Flag> *>(ExtType_Find(obj, id));
}

// The same on a type.
template <class Sig, class Flag = no_flag>
inline c_function_t<Sig, Flag> *find_method_in_type(PyTypeObject *tp, std::uint64_t id) noexcept
{
    return reinterpret_cast<c_function_t<Sig, Flag> *>(ExtType_FindInType(tp, id));
}

// A typed method's id and its type in one constant, so that the two cannot
// disagree:
//   constexpr et::typed_method<double(PyObject *)> area{"geom.Shape.v1:area"};
//   if (auto *f = area.find(obj)) ...
template <class Sig, class Flag = no_flag>
struct typed_method {
    using function_type = c_function_t<Sig, Flag>;
    std::uint64_t id;

    constexpr explicit typed_method(std::string_view name) noexcept : id(method_id<Sig, Flag>(name)) {}
    function_type *find(PyObject *obj) const noexcept { return find_method<Sig, Flag>(obj, id); }
    function_type *find_in_type(PyTypeObject *tp) const noexcept { return find_method_in_type<Sig, Flag>(tp, id); }
};

}  // namespace extensibletype

#endif /* EXTENSIBLETYPE_HPP */
