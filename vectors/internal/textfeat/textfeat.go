// Package textfeat is the deterministic text-feature mechanism behind the
// offline embedders: tokenization, feature hashing and a portable natural
// logarithm. Everything here is pure, allocation-light and produces the same
// bits on every machine: no map iteration order is observed, and no floating
// point operation may be fused (every product is rounded by an explicit
// float64 conversion, see the Go spec on fused operations).
package textfeat

import (
	"math"
	"strings"
	"unicode"
)

// stopwords is a small English stopword list. Changing it changes every
// offline model's output, so it is versioned with the model ids.
var stopwords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a about above after again against all am an and any are as at
		be because been before being below between both but by can could did do does doing down
		during each few for from further had has have having he her here hers herself him himself
		his how i if in into is it its itself just me more most my myself no nor not now of off on
		once only or other our ours ourselves out over own same she should so some such than that
		the their theirs them themselves then there these they this those through to too under
		until up very was we were what when where which while who whom why will with would you
		your yours yourself yourselves also may must shall been upon within without whether`) {
		m[w] = true
	}
	return m
}()

// Words splits text into lowercase alphanumeric words, drops stopwords and
// one-character tokens, and applies a light plural stemmer (Harman's S
// stemmer). The result is in text order.
func Words(text string) []string {
	var out []string
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}) {
		if len(w) < 2 || stopwords[w] {
			continue
		}
		out = append(out, stemS(w))
	}
	return out
}

// stemS is Harman's S stemmer: ies→y, es→e, s→"" with its exceptions.
func stemS(w string) string {
	n := len(w)
	switch {
	case n > 3 && strings.HasSuffix(w, "ies") && !strings.HasSuffix(w, "eies") && !strings.HasSuffix(w, "aies"):
		return w[:n-3] + "y"
	case n > 3 && strings.HasSuffix(w, "es") && !strings.HasSuffix(w, "aes") && !strings.HasSuffix(w, "ees") && !strings.HasSuffix(w, "oes"):
		return w[:n-1]
	case n > 2 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "ss"):
		return w[:n-1]
	}
	return w
}

// CharNGrams returns the character n-grams (minN ≤ n ≤ maxN, counted in
// runes) of every word of Words(text), each word framed as "<word>" so that
// prefixes and suffixes are distinct features. Words shorter than minN
// (framing included) contribute the whole framed word.
func CharNGrams(text string, minN, maxN int) []string {
	var out []string
	for _, w := range Words(text) {
		r := []rune("<" + w + ">")
		if len(r) <= minN {
			out = append(out, string(r))
			continue
		}
		for n := minN; n <= maxN; n++ {
			for i := 0; i+n <= len(r); i++ {
				out = append(out, string(r[i:i+n]))
			}
		}
	}
	return out
}

// Hash64 is FNV-1a over s, seeded, finished with a splitmix64 mix so that
// low bits are well distributed.
func Hash64(seed uint64, s string) uint64 {
	h := uint64(14695981039346656037) ^ Mix64(seed)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return Mix64(h)
}

// Mix64 is the splitmix64 finalizer.
func Mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

const ln2 = 0.693147180559945309417232121458176568

// Log is the natural logarithm of x > 0, computed portably: math.Log has
// architecture-specific assembly whose last bit may differ between
// machines, this does not. Accuracy is within a few ulp, which is all the
// weights need; what matters is that it is bit-identical everywhere.
// Log(x) for x ≤ 0 returns 0.
func Log(x float64) float64 {
	if x <= 0 || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	m, e := math.Frexp(x) // x = m·2^e, m in [0.5, 1)
	if m < math.Sqrt2/2 {
		m *= 2
		e--
	}
	// m in [√½, √2): ln m = 2·atanh(z), z = (m−1)/(m+1), |z| < 0.172.
	z := (m - 1) / (m + 1)
	z2 := float64(z * z)
	sum, term := 0.0, z
	for k := 1; k < 40; k += 2 {
		sum = float64(sum + float64(term/float64(k)))
		term = float64(term * z2)
		if term == 0 {
			break
		}
	}
	return float64(2*sum) + float64(float64(e)*ln2)
}
