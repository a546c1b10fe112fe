package authorize

import (
	"unicode"
)

// scriptTables are the scripts a client name is checked for. A letter in
// none of them (a rarer script) counts as a script of its own.
var scriptTables = []struct {
	name  string
	table *unicode.RangeTable
}{
	{"Latin", unicode.Latin}, {"Cyrillic", unicode.Cyrillic}, {"Greek", unicode.Greek},
	{"Armenian", unicode.Armenian}, {"Cherokee", unicode.Cherokee}, {"Georgian", unicode.Georgian},
	{"Han", unicode.Han}, {"Hiragana", unicode.Hiragana}, {"Katakana", unicode.Katakana},
	{"Hangul", unicode.Hangul}, {"Bopomofo", unicode.Bopomofo},
	{"Arabic", unicode.Arabic}, {"Hebrew", unicode.Hebrew}, {"Thai", unicode.Thai},
	{"Devanagari", unicode.Devanagari},
}

// cjkCombinations are the mixtures of scripts that ordinary names use
// (Unicode TS #39 §5.2, "highly restrictive"): Japanese, Chinese and
// Korean text is written with several scripts at once, and with Latin.
var cjkCombinations = []map[string]bool{
	{"Latin": true, "Han": true, "Hiragana": true, "Katakana": true},
	{"Latin": true, "Han": true, "Bopomofo": true},
	{"Latin": true, "Han": true, "Hangul": true},
}

// deceptiveName reports whether a client name mixes writing systems (e.g.
// Latin with Cyrillic or Greek look-alikes: "Сlaude" with a Cyrillic С)
// or uses full-width forms ("Ｃｌａｕｄｅ"): the tricks used to imitate
// another application's name. The consent page flags such names; it
// cannot catch a name written wholly in another script's look-alikes, so
// the page always shows the redirect host (and a verified domain) too.
func deceptiveName(name string) bool {
	scripts := map[string]bool{}
	for _, r := range name {
		if r >= 0xFF01 && r <= 0xFFEE { // Halfwidth and Fullwidth Forms
			return true
		}
		if !unicode.IsLetter(r) {
			continue // digits, punctuation, spaces, marks: Common or Inherited
		}
		script := "other:" + string(r)
		for _, s := range scriptTables {
			if unicode.Is(s.table, r) {
				script = s.name
				break
			}
		}
		scripts[script] = true
	}
	if len(scripts) <= 1 {
		return false
	}
	for _, allowed := range cjkCombinations {
		ok := true
		for s := range scripts {
			if !allowed[s] {
				ok = false
				break
			}
		}
		if ok {
			return false
		}
	}
	return true
}
