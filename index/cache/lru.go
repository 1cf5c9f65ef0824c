package cache

import (
	"fmt"
	"math"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// byteLRU is the one LRU of the tree: simplelru ordering with a byte count,
// so that both tiers are bounded by what they hold rather than by entries.
// It does not lock and does not evict by itself: the memory tier drops the
// oldest entries freely, while the disk tier must first remove a file and
// may fail to.
type byteLRU[V any] struct {
	items *simplelru.LRU[string, sized[V]]
	total int64
}

type sized[V any] struct {
	value V
	size  int64
}

func newByteLRU[V any]() (*byteLRU[V], error) {
	// The entry count is not the bound, bytes are: give simplelru room.
	items, err := simplelru.NewLRU[string, sized[V]](math.MaxInt, nil)
	if err != nil {
		return nil, fmt.Errorf("span cache: new LRU: %w", err)
	}
	return &byteLRU[V]{items: items}, nil
}

// get marks key as the most recently used.
func (l *byteLRU[V]) get(key string) (V, bool) {
	e, ok := l.items.Get(key)
	return e.value, ok
}

// peek and contains leave the order alone: asking is not using.
func (l *byteLRU[V]) peek(key string) (V, bool) {
	e, ok := l.items.Peek(key)
	return e.value, ok
}

func (l *byteLRU[V]) contains(key string) bool {
	_, ok := l.items.Peek(key)
	return ok
}

// add inserts or replaces key as the most recently used.
func (l *byteLRU[V]) add(key string, v V, size int64) {
	if old, ok := l.items.Peek(key); ok {
		l.total -= old.size
	}
	l.items.Add(key, sized[V]{value: v, size: size})
	l.total += size
}

// update replaces the value of a present key, keeping its size; like any
// write, it makes the key the most recently used.
func (l *byteLRU[V]) update(key string, v V) {
	if old, ok := l.items.Peek(key); ok {
		old.value = v
		l.items.Add(key, old)
	}
}

func (l *byteLRU[V]) remove(key string) {
	if old, ok := l.items.Peek(key); ok {
		l.total -= old.size
		l.items.Remove(key)
	}
}

func (l *byteLRU[V]) oldest() (string, bool) {
	key, _, ok := l.items.GetOldest()
	return key, ok
}

func (l *byteLRU[V]) len() int     { return l.items.Len() }
func (l *byteLRU[V]) bytes() int64 { return l.total }
