/* uer_ds.data._native: the hot path of preprocessing.
 *
 * UTF-8 decoding, BERT basic tokenization + WordPiece (and the char / space tokenizers), id packing,
 * line and document splitting of a corpus chunk, and the sentence-pair index of the bert/albert
 * processors.  The GIL is released while a chunk is tokenized.
 *
 * The rules are those of uer_ds/tokenizers/bert.py and simple.py, which are the reference: the ids
 * must be identical.  Unicode properties come from the running Python's unicodedata through
 * set_tables() (see unicode_tables.py), so the two can never disagree on a Unicode version.  Words
 * whose normalisation depends on context (Greek final sigma in str.lower, the canonical reordering
 * of non-Mn combining marks in NFD) are handed back to a Python fallback, word by word (bert) or
 * line by line (char, space); they are flagged RARE / SIGMA in the table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NCP 0x110000
#define MAX_WORD_CHARS 100 /* longer WordPiece inputs become [UNK], as in BERT */

/* flags[cp]: bits 0-1 the class of the basic tokenizer, then properties */
enum { C_DROP = 0, C_SPACE = 1, C_CJK = 2, C_OTHER = 3 };
#define F_CLASS 3u
#define F_PUNCT 4u    /* BERT punctuation: ASCII symbols or category P* */
#define F_ISSPACE 8u  /* str.isspace() */
#define F_LMAP 16u    /* strip_accents(ch.lower()) != ch */
#define F_RARE 32u    /* bert with lower-casing: this word needs the Python fallback */
#define F_CMAP 64u    /* ch.lower() != ch */
#define F_SIGMA 128u  /* ch.lower() depends on context: char/space with lower-casing use the fallback */

enum { K_BERT = 0, K_CHAR = 1, K_SPACE = 2 };
enum { M_LINES = 0, M_BERT = 1, M_CLS = 2 };

typedef struct {
    uint32_t *keys;   /* sorted code points */
    uint32_t *starts; /* n + 1 */
    uint32_t *data;   /* mapped code points */
    Py_ssize_t n;
} CpMap;

static uint8_t *g_flags = NULL;
static CpMap g_lstrip = {0}, g_lower = {0};
static PyObject *CorpusError = NULL;

/* ------------------------------------------------------------------------------------------------ */
/* small growable arrays                                                                            */

typedef struct {
    char *p;
    size_t n, cap; /* in elements */
    size_t item;
} Vec;

static int vec_reserve(Vec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + extra) cap *= 2;
    char *p = realloc(v->p, cap * v->item);
    if (!p) return -1;
    v->p = p;
    v->cap = cap;
    return 0;
}

static void vec_free(Vec *v) {
    free(v->p);
    v->p = NULL;
    v->n = v->cap = 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* UTF-8                                                                                            */

/* Decode one code point strictly (no overlongs, surrogates or > U+10FFFF), as Python's decoder.
 * Returns its length in bytes, or 0 when the bytes at s are not valid UTF-8. */
static inline int utf8_decode(const uint8_t *s, Py_ssize_t n, uint32_t *cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    if (b0 < 0xC2) return 0;
    if (b0 < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(b0 & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (b0 < 0xF0) {
        if (n < 2) return 0;
        uint8_t b1 = s[1];
        uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
        if (b1 < lo || b1 > hi) return 0;
        if (n < 3 || (s[2] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(b0 & 0x0F) << 12) | ((uint32_t)(b1 & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (b0 < 0xF5) {
        if (n < 2) return 0;
        uint8_t b1 = s[1];
        uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
        if (b1 < lo || b1 > hi) return 0;
        if (n < 3 || (s[2] & 0xC0) != 0x80) return 0;
        if (n < 4 || (s[3] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(b1 & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
              (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

static inline int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const uint32_t *cpmap_get(const CpMap *m, uint32_t cp, Py_ssize_t *len) {
    Py_ssize_t lo = 0, hi = m->n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (m->keys[mid] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < m->n && m->keys[lo] == cp) {
        *len = m->starts[lo + 1] - m->starts[lo];
        return m->data + m->starts[lo];
    }
    *len = 0;
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */
/* the vocabulary: open addressing over UTF-8 keys                                                  */

typedef struct {
    uint64_t hash;
    uint32_t off, len;
    int32_t id; /* -1: empty slot */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask;
    char *blob;
    size_t blob_n, blob_cap;
} Hash;

static inline uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 32;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 29;
    return h;
}

static int hash_init(Hash *h, size_t n) {
    size_t cap = 16;
    while (cap < n * 2 + 16) cap *= 2;
    h->slots = malloc(cap * sizeof(Slot));
    if (!h->slots) return -1;
    for (size_t i = 0; i < cap; i++) h->slots[i].id = -1;
    h->mask = cap - 1;
    h->blob = NULL;
    h->blob_n = h->blob_cap = 0;
    return 0;
}

static void hash_free(Hash *h) {
    free(h->slots);
    free(h->blob);
    h->slots = NULL;
    h->blob = NULL;
}

static inline int32_t hash_get_h(const Hash *h, const char *key, size_t n, uint64_t hv) {
    size_t i = hv & h->mask;
    for (;;) {
        const Slot *s = &h->slots[i];
        if (s->id < 0) return -1;
        if (s->hash == hv && s->len == n && memcmp(h->blob + s->off, key, n) == 0) return s->id;
        i = (i + 1) & h->mask;
    }
}

static inline int32_t hash_get(const Hash *h, const char *key, size_t n) {
    return hash_get_h(h, key, n, hash_bytes(key, n));
}

/* A later duplicate overwrites the earlier id (as Vocab does). */
static int hash_put(Hash *h, const char *key, size_t n, int32_t id) {
    uint64_t hv = hash_bytes(key, n);
    size_t i = hv & h->mask;
    for (;;) {
        Slot *s = &h->slots[i];
        if (s->id < 0) break;
        if (s->hash == hv && s->len == n && memcmp(h->blob + s->off, key, n) == 0) {
            s->id = id;
            return 0;
        }
        i = (i + 1) & h->mask;
    }
    if (h->blob_n + n > h->blob_cap) {
        size_t cap = h->blob_cap ? h->blob_cap : 4096;
        while (cap < h->blob_n + n) cap *= 2;
        char *b = realloc(h->blob, cap);
        if (!b) return -1;
        h->blob = b;
        h->blob_cap = cap;
    }
    memcpy(h->blob + h->blob_n, key, n);
    Slot *s = &h->slots[i];
    s->hash = hv;
    s->off = (uint32_t)h->blob_n;
    s->len = (uint32_t)n;
    s->id = id;
    h->blob_n += n;
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* the Encoder type                                                                                 */

typedef struct {
    PyObject_HEAD
    int kind, lower, wide;
    int32_t unk_id;
    Hash full; /* every token */
    Hash cont; /* tokens "##x", keyed by x */
    int max_full, max_cont; /* longest token in code points (cont: without the ##) */
    int32_t *bmp_id;        /* id of the one-character token cp < 0x10000, or -1 */
    PyObject *fallback;     /* callable(str) -> list[int]: a bert word, or a char/space line */
} Encoder;

/* A per-call cache of WordPiece results for short pieces: words repeat (Zipf), and a hit costs one
 * hash and one compare instead of a greedy search.  Consulted after the whole piece failed as a token.
 * Measured (CPU time, best of 15, 1.1 MB of English news): 35 -> 50 MB/s with the Chinese BERT
 * vocabulary, 98 -> 105 with the uncased English one; Chinese text unchanged (~200 MB/s). */
#define PC_SLOTS 4096
#define PC_KEY 24
#define PC_IDS 6
typedef struct {
    uint64_t hash;
    uint8_t klen, nids; /* klen 0: empty */
    char key[PC_KEY];
    int32_t ids[PC_IDS];
} PieceSlot;

/* Per-call state: outputs and scratch space (so an Encoder is read-only while it tokenizes). */
typedef struct {
    Encoder *e;
    Vec ids, ws;    /* token ids (2 or 4 bytes), word-start flags (uint8) */
    int want_ws;
    Vec word;       /* uint32 code points of the pending word */
    Vec tbuf;       /* uint32 transformed code points */
    Vec utf;        /* char: UTF-8 of a piece */
    Vec offs;       /* int32 byte offsets of the piece's code points */
    int word_rare;
    int boundary;   /* the next token starts a word */
    int64_t unk;
    PieceSlot *cache;  /* PC_SLOTS, allocated on first use */
    PyThreadState *ts; /* saved while the GIL is released; NULL when it is held */
    int oom;
} Ctx;

static inline int emit(Ctx *c, int32_t id, int ws) {
    if (vec_reserve(&c->ids, 1) || (c->want_ws && vec_reserve(&c->ws, 1))) {
        c->oom = 1;
        return -1;
    }
    if (c->e->wide)
        ((int32_t *)c->ids.p)[c->ids.n++] = id;
    else
        ((uint16_t *)c->ids.p)[c->ids.n++] = (uint16_t)id;
    if (c->want_ws) ((uint8_t *)c->ws.p)[c->ws.n++] = (uint8_t)ws;
    if (id == c->e->unk_id) c->unk++;
    return 0;
}

static inline int32_t single_id(const Encoder *e, uint32_t cp) {
    if (cp < 0x10000) return e->bmp_id[cp];
    char buf[4];
    int n = utf8_encode(cp, buf);
    return hash_get(&e->full, buf, (size_t)n);
}

static int wordpiece_search(Ctx *c, const char *utf, const int32_t *offs, Py_ssize_t n, int ws);

/* WordPiece greedy longest-match-first over cps[0..n); all or nothing: a piece with an unmatched
 * part is one [UNK]. */
static int wordpiece(Ctx *c, const uint32_t *cps, Py_ssize_t n) {
    Encoder *e = c->e;
    if (n == 0) return 0;
    int ws = c->boundary;
    c->boundary = 0;
    if (n > MAX_WORD_CHARS) return emit(c, e->unk_id, ws);
    if (n == 1) {
        int32_t id = single_id(e, cps[0]);
        return emit(c, id >= 0 ? id : e->unk_id, ws);
    }
    c->utf.n = 0;
    c->offs.n = 0;
    if (vec_reserve(&c->utf, (size_t)n * 4) || vec_reserve(&c->offs, (size_t)n + 1)) {
        c->oom = 1;
        return -1;
    }
    int32_t *offs = (int32_t *)c->offs.p;
    char *utf = c->utf.p;
    int32_t pos = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        offs[i] = pos;
        pos += utf8_encode(cps[i], utf + pos);
    }
    offs[n] = pos;
    uint64_t hv = hash_bytes(utf, (size_t)pos);
    if (n <= e->max_full) { /* the whole piece is a token: the common case with a matching vocabulary */
        int32_t id = hash_get_h(&e->full, utf, (size_t)pos, hv);
        if (id >= 0) return emit(c, id, ws);
    }
    PieceSlot *slot = NULL;
    if (pos <= PC_KEY) {
        if (!c->cache && !(c->cache = calloc(PC_SLOTS, sizeof(PieceSlot)))) {
            c->oom = 1;
            return -1;
        }
        slot = &c->cache[hv & (PC_SLOTS - 1)];
        if (slot->klen == pos && slot->hash == hv && memcmp(slot->key, utf, (size_t)pos) == 0) {
            for (int i = 0; i < slot->nids; i++)
                if (emit(c, slot->ids[i], i == 0 ? ws : 0)) return -1;
            return 0;
        }
    }
    size_t mark = c->ids.n;
    int rc = wordpiece_search(c, utf, offs, n, ws);
    size_t made = c->ids.n - mark;
    if (rc == 0 && slot && made <= PC_IDS) {
        slot->hash = hv;
        slot->klen = (uint8_t)pos;
        slot->nids = (uint8_t)made;
        memcpy(slot->key, utf, (size_t)pos);
        for (size_t i = 0; i < made; i++)
            slot->ids[i] = c->e->wide ? ((int32_t *)c->ids.p)[mark + i] : ((uint16_t *)c->ids.p)[mark + i];
    }
    return rc;
}

/* The greedy longest-match-first search itself; utf/offs: the piece's UTF-8 and code point offsets. */
static int wordpiece_search(Ctx *c, const char *utf, const int32_t *offs, Py_ssize_t n, int ws) {
    Encoder *e = c->e;
    size_t mark = c->ids.n, mark_ws = c->ws.n;
    int64_t mark_unk = c->unk;
    Py_ssize_t start = 0;
    while (start < n) {
        const Hash *h = start == 0 ? &e->full : &e->cont;
        Py_ssize_t limit = start == 0 ? e->max_full : e->max_cont;
        Py_ssize_t end = n < start + limit ? n : start + limit;
        int32_t id = -1;
        while (end > start) {
            id = hash_get(h, utf + offs[start], (size_t)(offs[end] - offs[start]));
            if (id >= 0) break;
            end--;
        }
        if (id < 0) {
            c->ids.n = mark;
            c->ws.n = mark_ws;
            c->unk = mark_unk;
            return emit(c, e->unk_id, ws);
        }
        if (emit(c, id, start == 0 ? ws : 0)) return -1;
        start = end;
    }
    return 0;
}

/* Call the Python fallback on UTF-8 text; append its ids.  ws_mode 0: first token gets the current
 * boundary flag, 1: every token starts a word. */
static int call_fallback(Ctx *c, const char *utf, Py_ssize_t n, int ws_mode) {
    int rc = 0;
    if (c->ts) PyEval_RestoreThread(c->ts);
    PyObject *text = PyUnicode_DecodeUTF8(utf, n, "strict");
    PyObject *res = text ? PyObject_CallOneArg(c->e->fallback, text) : NULL;
    Py_XDECREF(text);
    PyObject *seq = res ? PySequence_Fast(res, "the tokenizer fallback must return a list of ids") : NULL;
    Py_XDECREF(res);
    if (!seq) {
        rc = -2;
    } else {
        Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t i = 0; i < m && rc == 0; i++) {
            long id = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (id == -1 && PyErr_Occurred()) {
                rc = -2;
                break;
            }
            int ws = ws_mode ? 1 : (i == 0 ? c->boundary : 0);
            if (emit(c, (int32_t)id, ws)) rc = -1;
        }
        Py_DECREF(seq);
        c->boundary = ws_mode ? 1 : 0;
    }
    if (c->ts) c->ts = PyEval_SaveThread();
    return rc;
}

/* The pending word (a run of OTHER characters): lower-case + strip accents, split punctuation,
 * WordPiece each piece. */
static int flush_word(Ctx *c) {
    Py_ssize_t n = (Py_ssize_t)c->word.n;
    if (n == 0) return 0;
    const uint32_t *w = (const uint32_t *)c->word.p;
    int rc = 0;
    c->word.n = 0;
    if (c->word_rare) {
        c->word_rare = 0;
        Vec *u = &c->utf;
        u->n = 0;
        if (vec_reserve(u, (size_t)n * 4)) {
            c->oom = 1;
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) u->n += utf8_encode(w[i], u->p + u->n);
        return call_fallback(c, u->p, (Py_ssize_t)u->n, 0);
    }
    const uint32_t *t = w;
    Py_ssize_t tn = n;
    if (c->e->lower) {
        c->tbuf.n = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            uint32_t cp = w[i];
            if (vec_reserve(&c->tbuf, 8)) {
                c->oom = 1;
                return -1;
            }
            uint32_t *out = (uint32_t *)c->tbuf.p;
            if (cp < 0x80) {
                out[c->tbuf.n++] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
            } else if (g_flags[cp] & F_LMAP) {
                Py_ssize_t m;
                const uint32_t *mapped = cpmap_get(&g_lstrip, cp, &m);
                if (vec_reserve(&c->tbuf, (size_t)m)) {
                    c->oom = 1;
                    return -1;
                }
                out = (uint32_t *)c->tbuf.p;
                for (Py_ssize_t j = 0; j < m; j++) out[c->tbuf.n++] = mapped[j];
            } else {
                out[c->tbuf.n++] = cp;
            }
        }
        t = (const uint32_t *)c->tbuf.p;
        tn = (Py_ssize_t)c->tbuf.n;
    }
    Py_ssize_t piece = 0;
    for (Py_ssize_t i = 0; i < tn && rc == 0; i++) {
        if (g_flags[t[i]] & F_PUNCT) {
            rc = wordpiece(c, t + piece, i - piece);
            c->boundary = 1;
            if (rc == 0) rc = wordpiece(c, t + i, 1);
            c->boundary = 1;
            piece = i + 1;
        }
    }
    if (rc == 0) rc = wordpiece(c, t + piece, tn - piece);
    return rc;
}

static inline int push_word(Ctx *c, uint32_t cp) {
    if (vec_reserve(&c->word, 1)) {
        c->oom = 1;
        return -1;
    }
    ((uint32_t *)c->word.p)[c->word.n++] = cp;
    return 0;
}

/* Return codes of the tokenizers: 0 ok, -1 out of memory, -2 Python error, -3 invalid UTF-8
 * (*err at the first bad byte), -4 the char/space line needs the fallback. */
static int tok_bert(Ctx *c, const uint8_t *s, Py_ssize_t n, Py_ssize_t *err, int *nonblank) {
    const Encoder *e = c->e;
    const int lower = e->lower;
    Py_ssize_t i = 0;
    int rc = 0;
    while (i < n) {
        uint32_t cp;
        int len;
        if (s[i] < 0x80) {
            cp = s[i];
            len = 1;
        } else {
            len = utf8_decode(s + i, n - i, &cp);
            if (!len) {
                *err = i;
                return -3;
            }
        }
        i += len;
        uint8_t f = g_flags[cp];
        if (!(f & F_ISSPACE)) *nonblank = 1;
        switch (f & F_CLASS) {
        case C_DROP:
            break;
        case C_SPACE:
            if ((rc = flush_word(c))) return rc;
            c->boundary = 1;
            break;
        case C_CJK:
            if ((rc = flush_word(c))) return rc;
            if (lower && (f & (F_LMAP | F_RARE))) { /* compatibility ideographs: normalise first */
                if (push_word(c, cp)) return -1;
                c->word_rare = (f & F_RARE) != 0;
                if ((rc = flush_word(c))) return rc;
                c->boundary = 0;
            } else {
                int32_t id = single_id(e, cp);
                if (emit(c, id >= 0 ? id : e->unk_id, c->boundary)) return -1;
                c->boundary = 0;
            }
            break;
        default:
            if (push_word(c, cp)) return -1;
            if (lower && (f & F_RARE)) c->word_rare = 1;
        }
    }
    return flush_word(c);
}

/* char and space: tokens are characters / whitespace-separated fields of text.lower() (when
 * lower-casing), whitespace being str.isspace(). */
static int tok_simple(Ctx *c, const uint8_t *s, Py_ssize_t n, Py_ssize_t *err, int *nonblank) {
    const Encoder *e = c->e;
    const int lower = e->lower, is_char = e->kind == K_CHAR;
    Py_ssize_t i = 0;
    Vec *u = &c->utf;
    u->n = 0;
    while (i <= n) {
        uint32_t cp = ' ';
        int len = 1;
        if (i < n) {
            if (s[i] < 0x80) {
                cp = s[i];
            } else {
                len = utf8_decode(s + i, n - i, &cp);
                if (!len) {
                    *err = i;
                    return -3;
                }
            }
        }
        i += len;
        uint8_t f = g_flags[cp];
        if (lower && (f & F_SIGMA)) return -4;
        uint32_t one = cp;
        const uint32_t *mapped = &one;
        Py_ssize_t m = 1;
        if (lower) {
            if (cp < 0x80)
                one = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
            else if (f & F_CMAP)
                mapped = cpmap_get(&g_lower, cp, &m);
        }
        if (!(f & F_ISSPACE)) *nonblank = 1;
        for (Py_ssize_t j = 0; j < m; j++) {
            uint32_t x = mapped[j];
            int space = (g_flags[x] & F_ISSPACE) != 0;
            if (is_char) {
                if (space) {
                    c->boundary = 1;
                    continue;
                }
                int32_t id = single_id(e, x);
                if (emit(c, id >= 0 ? id : e->unk_id, c->boundary)) return -1;
                c->boundary = 0;
            } else if (space) {
                if (u->n) {
                    int32_t id = hash_get(&e->full, u->p, u->n);
                    if (emit(c, id >= 0 ? id : e->unk_id, 1)) return -1;
                    u->n = 0;
                }
            } else {
                if (vec_reserve(u, 4)) {
                    c->oom = 1;
                    return -1;
                }
                u->n += utf8_encode(x, u->p + u->n);
            }
        }
    }
    return 0;
}

/* Tokenize one span of UTF-8 (a line or a field); falls back to Python for char/space lines that
 * need it.  *nonblank: whether any character is not white space. */
static int tokenize_span(Ctx *c, const uint8_t *s, Py_ssize_t n, Py_ssize_t *err, int *nonblank) {
    c->boundary = 1;
    c->word.n = 0;
    c->word_rare = 0;
    if (c->e->kind == K_BERT) return tok_bert(c, s, n, err, nonblank);
    size_t mark = c->ids.n, mark_ws = c->ws.n;
    int64_t mark_unk = c->unk;
    int rc = tok_simple(c, s, n, err, nonblank);
    if (rc == -4) {
        c->ids.n = mark;
        c->ws.n = mark_ws;
        c->unk = mark_unk;
        rc = call_fallback(c, (const char *)s, n, 1);
    }
    return rc;
}

static void ctx_free(Ctx *c) {
    free(c->cache);
    c->cache = NULL;
    vec_free(&c->ids);
    vec_free(&c->ws);
    vec_free(&c->word);
    vec_free(&c->tbuf);
    vec_free(&c->utf);
    vec_free(&c->offs);
}

static void ctx_init(Ctx *c, Encoder *e, int want_ws) {
    memset(c, 0, sizeof(*c));
    c->e = e;
    c->want_ws = want_ws;
    c->ids.item = e->wide ? 4 : 2;
    c->ws.item = 1;
    c->word.item = 4;
    c->tbuf.item = 4;
    c->utf.item = 1;
    c->offs.item = 4;
}

/* Raise the error of a failed tokenization; rc as above. */
static PyObject *raise_rc(Ctx *c, int rc, Py_ssize_t base, Py_ssize_t err, const uint8_t *s, Py_ssize_t n) {
    if (rc == -2) return NULL; /* the fallback's exception is set */
    if (rc == -1 || c->oom) return PyErr_NoMemory();
    if (rc == -3) {
        char hex[16] = {0};
        Py_ssize_t k = 0; /* up to 4 bytes from the bad one, within the line */
        while (k < 4 && err + k < n && (k == 0 || s[err + k] != '\n')) k++;
        for (Py_ssize_t j = 0; j < k; j++) snprintf(hex + 3 * j, 4, "%02x ", s[err + j]);
        if (k > 0) hex[3 * k - 1] = 0;
        PyObject *args = Py_BuildValue("(snz)", "invalid UTF-8", base + err, hex);
        if (args) PyErr_SetObject(CorpusError, args);
        Py_XDECREF(args);
        return NULL;
    }
    PyErr_SetString(PyExc_RuntimeError, "tokenizer failed");
    return NULL;
}

static PyObject *ids_to_list(Ctx *c) {
    PyObject *list = PyList_New((Py_ssize_t)c->ids.n);
    if (!list) return NULL;
    for (size_t i = 0; i < c->ids.n; i++) {
        long v = c->e->wide ? ((int32_t *)c->ids.p)[i] : ((uint16_t *)c->ids.p)[i];
        PyList_SET_ITEM(list, (Py_ssize_t)i, PyLong_FromLong(v));
    }
    return list;
}

/* Encoder.encode(text: str | bytes, word_starts=False) -> list[int] (or (ids, starts)) */
static PyObject *Encoder_encode(Encoder *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"text", "word_starts", NULL};
    PyObject *text;
    int want_ws = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|p", names, &text, &want_ws)) return NULL;
    const char *s;
    Py_ssize_t n;
    if (PyUnicode_Check(text)) {
        s = PyUnicode_AsUTF8AndSize(text, &n);
        if (!s) return NULL;
    } else if (PyBytes_Check(text)) {
        s = PyBytes_AS_STRING(text);
        n = PyBytes_GET_SIZE(text);
    } else {
        PyErr_SetString(PyExc_TypeError, "encode() takes str or bytes");
        return NULL;
    }
    Ctx c;
    ctx_init(&c, self, want_ws);
    Py_ssize_t err = 0;
    int nonblank = 0;
    int rc = tokenize_span(&c, (const uint8_t *)s, n, &err, &nonblank);
    PyObject *out = NULL;
    if (rc || c.oom) {
        raise_rc(&c, rc, 0, err, (const uint8_t *)s, n);
    } else {
        out = ids_to_list(&c);
        if (out && want_ws) {
            PyObject *ws = PyBytes_FromStringAndSize(c.ws.p ? c.ws.p : "", (Py_ssize_t)c.ws.n);
            PyObject *pair = ws ? PyTuple_Pack(2, out, ws) : NULL;
            Py_XDECREF(ws);
            Py_DECREF(out);
            out = pair;
        }
    }
    ctx_free(&c);
    return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* corpus chunks                                                                                    */

typedef struct {
    Vec seq_len;    /* int32 per sequence */
    Vec doc_start;  /* uint8 per sequence: 1 = begins a document */
    Vec labels;     /* int64 per document (cls) */
    int64_t lines, blank, empty;
    int new_doc;    /* bert mode: a blank line was seen, the next sequence starts a document */
    /* error */
    const char *rule;
    Py_ssize_t err_off;
    char detail[96];
} Chunk;

static int chunk_push_seq(Ctx *c, Chunk *k, size_t before, int doc_start) {
    size_t len = c->ids.n - before;
    if (len > INT32_MAX) {
        k->rule = "sequence longer than 2147483647 tokens";
        return -5;
    }
    if (vec_reserve(&k->seq_len, 1) || vec_reserve(&k->doc_start, 1)) return -1;
    ((int32_t *)k->seq_len.p)[k->seq_len.n++] = (int32_t)len;
    ((uint8_t *)k->doc_start.p)[k->doc_start.n++] = (uint8_t)doc_start;
    return 0;
}

static int is_blank_utf8(const uint8_t *s, Py_ssize_t n, Py_ssize_t *err) {
    Py_ssize_t i = 0;
    int nonblank = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (!len) {
            *err = i;
            return -3;
        }
        if (!(g_flags[cp] & F_ISSPACE)) nonblank = 1;
        i += len;
    }
    return !nonblank;
}

/* A cls line: label<TAB>text_a[<TAB>text_b]. */
static int chunk_cls_line(Ctx *c, Chunk *k, const uint8_t *s, Py_ssize_t n, Py_ssize_t line_off) {
    Py_ssize_t err = 0;
    int blank = is_blank_utf8(s, n, &err);
    if (blank < 0) {
        k->err_off = line_off + err;
        return -3;
    }
    if (blank) {
        k->blank++;
        return 0;
    }
    Py_ssize_t tabs[3];
    int nt = 0;
    for (Py_ssize_t i = 0; i < n && nt < 3; i++)
        if (s[i] == '\t') tabs[nt++] = i;
    if (nt < 1 || nt > 2) {
        k->rule = "a cls line must be label<TAB>text_a[<TAB>text_b]";
        k->err_off = line_off;
        snprintf(k->detail, sizeof k->detail, "%s tab-separated fields", nt == 0 ? "1" : "more than 3");
        return -5;
    }
    Py_ssize_t a = 0, b = tabs[0];
    while (a < b && (s[a] == ' ' || s[a] == '\r' || s[a] == '\v' || s[a] == '\f')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\r' || s[b - 1] == '\v' || s[b - 1] == '\f')) b--;
    int64_t label = 0;
    int ok = b > a && b - a <= 9;
    for (Py_ssize_t i = a; i < b && ok; i++) {
        if (s[i] < '0' || s[i] > '9')
            ok = 0;
        else
            label = label * 10 + (s[i] - '0');
    }
    if (!ok) {
        k->rule = "the label of a cls line must be a non-negative integer below 10^9";
        k->err_off = line_off;
        Py_ssize_t m = tabs[0] < 60 ? tabs[0] : 60;
        while (m > 0 && m < tabs[0] && (s[m] & 0xC0) == 0x80) m--; /* cut on a character boundary */
        snprintf(k->detail, sizeof k->detail, "%.*s%s", (int)m, (const char *)s, m < tabs[0] ? "..." : "");
        return -5;
    }
    if (vec_reserve(&k->labels, 1)) return -1;
    ((int64_t *)k->labels.p)[k->labels.n++] = label;
    Py_ssize_t start = tabs[0] + 1;
    for (int f = 0; f < nt; f++) {
        Py_ssize_t end = f + 1 < nt ? tabs[f + 1] : n;
        size_t before = c->ids.n;
        int nb = 0;
        int rc = tokenize_span(c, s + start, end - start, &err, &nb);
        if (rc) {
            if (rc == -3) k->err_off = line_off + start + err;
            return rc;
        }
        if ((rc = chunk_push_seq(c, k, before, f == 0))) return rc;
        start = end + 1;
    }
    return 0;
}

static int process_chunk(Ctx *c, Chunk *k, const uint8_t *s, Py_ssize_t n, Py_ssize_t base, int mode) {
    Py_ssize_t pos = 0;
    while (pos < n) {
        const uint8_t *nl = memchr(s + pos, '\n', (size_t)(n - pos));
        Py_ssize_t end = nl ? nl - s : n, next = nl ? end + 1 : n;
        Py_ssize_t len = end - pos;
        if (len > 0 && s[pos + len - 1] == '\r') len--; /* CRLF */
        k->lines++;
        k->err_off = base + pos;
        int rc;
        if (mode == M_CLS) {
            rc = chunk_cls_line(c, k, s + pos, len, base + pos);
        } else {
            size_t before = c->ids.n;
            Py_ssize_t err = 0;
            int nonblank = 0;
            rc = tokenize_span(c, s + pos, len, &err, &nonblank);
            if (rc == -3) k->err_off = base + pos + err;
            if (rc == 0) {
                if (!nonblank) {
                    k->blank++;
                    k->new_doc = 1;
                } else if (c->ids.n == before) {
                    k->empty++;
                } else if (mode == M_LINES) {
                    rc = chunk_push_seq(c, k, before, 1);
                } else {
                    rc = chunk_push_seq(c, k, before, k->new_doc);
                    k->new_doc = 0;
                }
            }
        }
        if (rc) return rc;
        if (c->oom) return -1;
        pos = next;
    }
    return 0;
}

static PyObject *vec_bytes(const Vec *v) {
    return PyBytes_FromStringAndSize(v->p ? v->p : "", (Py_ssize_t)(v->n * v->item));
}

/* Encoder.encode_chunk(buffer, mode, base_offset, new_doc, word_starts) -> dict
 * buffer: whole lines of the corpus (bytes-like); mode 0 lines, 1 bert, 2 cls; base_offset: the
 * buffer's byte offset in the corpus (for errors); new_doc (bert): the first sequence starts a
 * document.  The GIL is released while the buffer is tokenized. */
static PyObject *Encoder_encode_chunk(Encoder *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"buffer", "mode", "base_offset", "new_doc", "word_starts", NULL};
    Py_buffer buf;
    int mode = 0, new_doc = 1, want_ws = 0;
    Py_ssize_t base = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|inpp", names, &buf, &mode, &base, &new_doc, &want_ws))
        return NULL;
    if (mode < 0 || mode > 2) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "mode must be 0 (lines), 1 (bert) or 2 (cls)");
        return NULL;
    }
    Ctx c;
    ctx_init(&c, self, want_ws);
    Chunk k;
    memset(&k, 0, sizeof k);
    k.seq_len.item = 4;
    k.doc_start.item = 1;
    k.labels.item = 8;
    k.new_doc = new_doc;
    c.ts = PyEval_SaveThread();
    int rc = process_chunk(&c, &k, (const uint8_t *)buf.buf, buf.len, base, mode);
    PyEval_RestoreThread(c.ts);
    c.ts = NULL;
    PyObject *out = NULL;
    if (rc == -5) {
        PyObject *a = Py_BuildValue("(sns)", k.rule, k.err_off, k.detail);
        if (a) PyErr_SetObject(CorpusError, a);
        Py_XDECREF(a);
    } else if (rc == -3) {
        raise_rc(&c, rc, base, k.err_off - base, (const uint8_t *)buf.buf, buf.len);
    } else if (rc || c.oom) {
        raise_rc(&c, rc ? rc : -1, base, 0, NULL, 0);
    } else {
        out = Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:L,s:L,s:L,s:L,s:O}", "ids", vec_bytes(&c.ids), "seq_lengths",
                            vec_bytes(&k.seq_len), "doc_starts", vec_bytes(&k.doc_start), "labels",
                            vec_bytes(&k.labels), "word_starts", want_ws ? vec_bytes(&c.ws) : Py_NewRef(Py_None),
                            "lines", (long long)k.lines, "blank_lines", (long long)k.blank, "empty_lines",
                            (long long)k.empty, "unk", (long long)c.unk, "new_doc", k.new_doc ? Py_True : Py_False);
    }
    ctx_free(&c);
    vec_free(&k.seq_len);
    vec_free(&k.doc_start);
    vec_free(&k.labels);
    PyBuffer_Release(&buf);
    return out;
}

static int utf8_length_cps(const char *s, Py_ssize_t n) {
    int count = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (((uint8_t)s[i] & 0xC0) != 0x80) count++;
    return count;
}

/* Encoder(kind, tokens, unk_id, lower, wide, fallback) */
static int Encoder_init(Encoder *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"kind", "tokens", "unk_id", "lower", "wide", "fallback", NULL};
    int kind, lower, wide, unk_id;
    PyObject *tokens, *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOippO", names, &kind, &tokens, &unk_id, &lower, &wide, &fallback))
        return -1;
    if (!g_flags) {
        PyErr_SetString(PyExc_RuntimeError, "call set_tables() before creating an Encoder");
        return -1;
    }
    if (kind < 0 || kind > 2) {
        PyErr_SetString(PyExc_ValueError, "kind must be 0 (bert), 1 (char) or 2 (space)");
        return -1;
    }
    if (self->full.slots) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder is already initialised");
        return -1;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return -1;
    }
    PyObject *seq = PySequence_Fast(tokens, "tokens must be a sequence of str");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (unk_id < 0 || unk_id >= n || (!wide && n > 65536)) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "unk_id must index the vocabulary, and a vocabulary over 65536 needs wide");
        return -1;
    }
    self->kind = kind;
    self->lower = lower;
    self->wide = wide;
    self->unk_id = unk_id;
    self->max_full = self->max_cont = 1;
    if (hash_init(&self->full, (size_t)n) || hash_init(&self->cont, (size_t)n)) goto nomem;
    self->bmp_id = malloc(0x10000 * sizeof(int32_t));
    if (!self->bmp_id) goto nomem;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        if (!s) {
            Py_DECREF(seq);
            return -1;
        }
        if (hash_put(&self->full, s, (size_t)len, (int32_t)i)) goto nomem;
        int chars = utf8_length_cps(s, len);
        if (chars > self->max_full) self->max_full = chars;
        if (len > 2 && s[0] == '#' && s[1] == '#') {
            if (hash_put(&self->cont, s + 2, (size_t)len - 2, (int32_t)i)) goto nomem;
            if (chars - 2 > self->max_cont) self->max_cont = chars - 2;
        }
    }
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        char buf[4];
        int m = utf8_encode(cp, buf);
        self->bmp_id[cp] = (cp >= 0xD800 && cp < 0xE000) ? -1 : hash_get(&self->full, buf, (size_t)m);
    }
    Py_DECREF(seq);
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    return 0;
nomem:
    Py_DECREF(seq);
    PyErr_NoMemory();
    return -1;
}

static void Encoder_dealloc(Encoder *self) {
    hash_free(&self->full);
    hash_free(&self->cont);
    free(self->bmp_id);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Encoder_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))Encoder_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, word_starts=False) -> ids, or (ids, word-start bytes)"},
    {"encode_chunk", (PyCFunction)(void (*)(void))Encoder_encode_chunk, METH_VARARGS | METH_KEYWORDS,
     "encode_chunk(buffer, mode=0, base_offset=0, new_doc=True, word_starts=False) -> dict"},
    {NULL}};

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "uer_ds.data._native.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_doc = "A tokenizer over a vocabulary: Encoder(kind, tokens, unk_id, lower, wide, fallback)",
};

/* ------------------------------------------------------------------------------------------------ */
/* tables                                                                                           */

static int load_map(CpMap *m, Py_buffer *keys, Py_buffer *starts, Py_buffer *data) {
    Py_ssize_t n = keys->len / 4;
    if (starts->len != (n + 1) * 4 || data->len % 4) return -1;
    m->keys = malloc((size_t)keys->len + 4);
    m->starts = malloc((size_t)starts->len);
    m->data = malloc((size_t)data->len + 4);
    if (!m->keys || !m->starts || !m->data) return -2;
    memcpy(m->keys, keys->buf, (size_t)keys->len);
    memcpy(m->starts, starts->buf, (size_t)starts->len);
    memcpy(m->data, data->buf, (size_t)data->len);
    m->n = n;
    for (Py_ssize_t i = 0; i < n; i++)
        if (m->starts[i] > m->starts[i + 1] || (Py_ssize_t)m->starts[i + 1] * 4 > data->len ||
            (i && m->keys[i - 1] >= m->keys[i]))
            return -1;
    for (Py_ssize_t i = 0; i < data->len / 4; i++)
        if (m->data[i] >= NCP) return -1;
    return 0;
}

/* set_tables(flags, lstrip_keys, lstrip_starts, lstrip_data, lower_keys, lower_starts, lower_data)
 * Once per process; later calls are ignored (returns False). */
static PyObject *set_tables(PyObject *mod, PyObject *args) {
    (void)mod;
    Py_buffer b[7];
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6])) return NULL;
    PyObject *ret = NULL;
    if (g_flags) {
        ret = Py_NewRef(Py_False);
    } else if (b[0].len != NCP) {
        PyErr_SetString(PyExc_ValueError, "flags must have 0x110000 bytes");
    } else {
        CpMap ls = {0}, lo = {0};
        int r1 = load_map(&ls, &b[1], &b[2], &b[3]), r2 = r1 ? 0 : load_map(&lo, &b[4], &b[5], &b[6]);
        if (r1 || r2) {
            free(ls.keys), free(ls.starts), free(ls.data), free(lo.keys), free(lo.starts), free(lo.data);
            if (r1 == -2 || r2 == -2)
                PyErr_NoMemory();
            else
                PyErr_SetString(PyExc_ValueError, "malformed code point map");
        } else {
            uint8_t *flags = malloc(NCP);
            if (!flags) {
                PyErr_NoMemory();
            } else {
                memcpy(flags, b[0].buf, NCP);
                g_lstrip = ls;
                g_lower = lo;
                g_flags = flags;
                ret = Py_NewRef(Py_True);
            }
        }
    }
    for (int i = 0; i < 7; i++) PyBuffer_Release(&b[i]);
    return ret;
}

static PyObject *tables_ready(PyObject *mod, PyObject *noargs) {
    (void)mod, (void)noargs;
    return PyBool_FromLong(g_flags != NULL);
}

/* ------------------------------------------------------------------------------------------------ */
/* the sentence-pair index of the bert (NSP) and albert (SOP) processors                           */

/* splitmix64: the generator uer_ds.data.pairs mirrors in Python. */
static inline uint64_t sm_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double sm_random(uint64_t *s) { return (double)(sm_next(s) >> 11) * (1.0 / 9007199254740992.0); }
static inline int64_t sm_randint(uint64_t *s, int64_t a, int64_t b) { /* inclusive */
    return a + (int64_t)(sm_next(s) % (uint64_t)(b - a + 1));
}
static inline uint64_t sm_seed(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t s = seed;
    uint64_t x = sm_next(&s) ^ a;
    s = x;
    x = sm_next(&s) ^ b;
    s = x;
    return sm_next(&s);
}

/* pair_index(doc_idx int64[D+1], lengths int32[N], max_num_tokens, short_seq_prob, dup_factor, seed, sop)
 * -> bytes of int64 rows (first_seq, a_end, chunk_end, target_len, label, doc). */
static PyObject *pair_index(PyObject *mod, PyObject *args) {
    (void)mod;
    Py_buffer db, lb;
    long long max_tokens, dup, seed;
    double short_prob;
    int sop;
    if (!PyArg_ParseTuple(args, "y*y*LdLLp", &db, &lb, &max_tokens, &short_prob, &dup, &seed, &sop)) return NULL;
    const int64_t *doc_idx = db.buf;
    const int32_t *lengths = lb.buf;
    Py_ssize_t D = db.len / 8 - 1, N = lb.len / 4;
    PyObject *out = NULL;
    if (D < 0 || max_tokens < 2 || dup < 1) {
        PyErr_SetString(PyExc_ValueError, "pair_index: bad arguments");
        goto done;
    }
    for (Py_ssize_t d = 0; d <= D; d++)
        if (doc_idx[d] < 0 || doc_idx[d] > N || (d && doc_idx[d] < doc_idx[d - 1])) {
            PyErr_SetString(PyExc_ValueError, "pair_index: doc_idx is not a non-decreasing index into lengths");
            goto done;
        }
    Vec rows = {0};
    rows.item = 6 * sizeof(int64_t);
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < dup && !oom; r++) {
        for (Py_ssize_t d = 0; d < D && !oom; d++) {
            uint64_t st = sm_seed((uint64_t)seed, (uint64_t)r, (uint64_t)d);
            int64_t first = doc_idx[d], end = doc_idx[d + 1];
            int64_t target = max_tokens;
            if (sm_random(&st) < short_prob) target = sm_randint(&st, 2, max_tokens);
            int64_t chunk_start = first, cur = 0;
            for (int64_t i = first; i < end; i++) {
                cur += lengths[i];
                if (i != end - 1 && cur < target) continue;
                int64_t count = i + 1 - chunk_start;
                int64_t a_count = count >= 2 ? sm_randint(&st, 1, count - 1) : 1;
                int64_t label, chunk_end = i + 1;
                if (sop) {
                    label = sm_random(&st) < 0.5;
                } else {
                    label = count == 1 || sm_random(&st) < 0.5;
                    if (label) { /* the unused sentences go back for the next chunk */
                        chunk_end = chunk_start + a_count;
                        i = chunk_end - 1;
                    }
                }
                if (vec_reserve(&rows, 1)) {
                    oom = 1;
                    break;
                }
                int64_t *row = (int64_t *)(rows.p + rows.n * rows.item);
                row[0] = chunk_start;
                row[1] = chunk_start + a_count;
                row[2] = chunk_end;
                row[3] = target;
                row[4] = label;
                row[5] = d;
                rows.n++;
                chunk_start = i + 1;
                cur = 0;
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (oom)
        PyErr_NoMemory();
    else
        out = vec_bytes(&rows);
    vec_free(&rows);
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&lb);
    return out;
}

static PyMethodDef module_methods[] = {
    {"set_tables", set_tables, METH_VARARGS, "set_tables(flags, lstrip maps..., lower maps...): once per process"},
    {"tables_ready", tables_ready, METH_NOARGS, "whether set_tables() has run"},
    {"pair_index", pair_index, METH_VARARGS, "the NSP/SOP chunk index (see uer_ds.data.pairs)"},
    {NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "uer_ds.data._native", .m_doc = "C hot path of uer_ds preprocessing",
    .m_size = -1, .m_methods = module_methods};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyType_Ready(&EncoderType) < 0) goto fail;
    Py_INCREF(&EncoderType);
    if (PyModule_AddObject(m, "Encoder", (PyObject *)&EncoderType) < 0) goto fail;
    CorpusError = PyErr_NewException("uer_ds.data._native.CorpusError", PyExc_ValueError, NULL);
    if (!CorpusError || PyModule_AddObject(m, "CorpusError", Py_NewRef(CorpusError)) < 0) goto fail;
    PyModule_AddIntConstant(m, "MODE_LINES", M_LINES);
    PyModule_AddIntConstant(m, "MODE_BERT", M_BERT);
    PyModule_AddIntConstant(m, "MODE_CLS", M_CLS);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
