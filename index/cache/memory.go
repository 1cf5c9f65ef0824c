package cache

import "sync"

// memoryTier is a byte-bounded LRU of spans.
type memoryTier struct {
	max int64

	mu  sync.Mutex
	lru *byteLRU[[]byte]
}

func newMemoryTier(max int64) (*memoryTier, error) {
	lru, err := newByteLRU[[]byte]()
	if err != nil {
		return nil, err
	}
	return &memoryTier{max: max, lru: lru}, nil
}

func (m *memoryTier) get(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.get(key)
}

func (m *memoryTier) contains(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.contains(key)
}

func (m *memoryTier) put(key string, data []byte) {
	size := int64(len(data))
	if size > m.max {
		return // keeping it would evict everything else for one span
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lru.add(key, data, size)
	for m.lru.bytes() > m.max {
		oldest, _ := m.lru.oldest()
		m.lru.remove(oldest)
	}
}

func (m *memoryTier) bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.bytes()
}
