package index

import (
	"encoding/base64"
	"log/slog"
	"net/url"
	"strings"
)

const (
	schilyXattr     = "SCHILY.xattr."     // value is the raw attribute value
	libarchiveXattr = "LIBARCHIVE.xattr." // name is %-encoded, value is base64
)

// xattrs collects extended attributes from PAX records. SCHILY records win
// over LIBARCHIVE records for the same name (GNU tar and bsdtar write both).
func xattrs(rec map[string]string, log *slog.Logger) map[string]string {
	var out map[string]string
	put := func(name, value string) {
		if out == nil {
			out = make(map[string]string)
		}
		out[name] = value
	}
	for k, v := range rec {
		if name, ok := strings.CutPrefix(k, libarchiveXattr); ok && name != "" {
			name, err := url.PathUnescape(name)
			if err != nil {
				log.Warn("ignoring LIBARCHIVE xattr with a malformed name", "record", k)
				continue
			}
			value, err := decodeBase64Loose(v)
			if err != nil {
				log.Warn("ignoring LIBARCHIVE xattr with a malformed value", "name", name)
				continue
			}
			put(name, value)
		}
	}
	for k, v := range rec {
		if name, ok := strings.CutPrefix(k, schilyXattr); ok && name != "" {
			put(name, v)
		}
	}
	return out
}

// decodeBase64Loose accepts base64 with or without padding: libarchive
// writes it without.
func decodeBase64Loose(s string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	return string(b), err
}
