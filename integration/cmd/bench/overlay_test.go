package main

import (
	"strings"
	"testing"
)

func TestParseRequestMix(t *testing.T) {
	log := statsSample + "fuse requests: lookup 2, getxattr 55705, opendir 5657, other 0, total 61364\n"
	mix, err := parseRequestMix(log)
	if err != nil {
		t.Fatal(err)
	}
	if mix["getxattr"] != 55705 || mix["opendir"] != 5657 || mix["total"] != 61364 || mix["lookup"] != 2 {
		t.Errorf("parsed %v", mix)
	}
	if s := mix.String(); s != "getxattr 55705, opendir 5657, lookup 2, total 61364" {
		t.Errorf("String: %q", s)
	}
	if _, err := parseRequestMix(statsSample); err == nil {
		t.Error("a log without the request line parsed")
	}
	if _, err := parseRequestMix("fuse requests: lookup x, total 1\n"); err == nil {
		t.Error("a malformed count parsed")
	}
	if s := requestMix(nil).String(); !strings.Contains(s, "not counted") {
		t.Errorf("nil mix: %q", s)
	}
}

func TestSelectPhases(t *testing.T) {
	all, err := selectPhases("")
	if err != nil || len(all) != len(phases) {
		t.Fatalf("all: %d phases, %v", len(all), err)
	}
	got, err := selectPhases("overlay, walk")
	if err != nil || len(got) != 2 || got[0].key != "walk" || got[1].key != "overlay" {
		t.Fatalf("overlay,walk: %v %v", got, err)
	}
	if _, err := selectPhases("overlay,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown key: %v", err)
	}
}
