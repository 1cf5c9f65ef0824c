package index

import (
	"container/list"
	"sync"
)

// memoryCache is a bounded LRU of decoded spans. The data it returns is
// shared: callers must not modify it.
type memoryCache struct {
	mu    sync.Mutex
	max   int64
	used  int64
	order *list.List // front = most recently used; values are *cacheItem
	items map[string]*list.Element
}

type cacheItem struct {
	key  string
	data []byte
}

// NewMemoryCache returns a SpanCache holding at most maxBytes of span data,
// evicting the least recently used spans first.
func NewMemoryCache(maxBytes int64) SpanCache {
	return &memoryCache{max: maxBytes, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *memoryCache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheItem).data, true
}

func (c *memoryCache) Put(key string, data []byte) {
	size := int64(len(data))
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		item := el.Value.(*cacheItem)
		c.used += size - int64(len(item.data))
		item.data = data
		c.order.MoveToFront(el)
	} else {
		c.items[key] = c.order.PushFront(&cacheItem{key: key, data: data})
		c.used += size
	}
	for c.used > c.max {
		el := c.order.Back()
		item := el.Value.(*cacheItem)
		c.order.Remove(el)
		delete(c.items, item.key)
		c.used -= int64(len(item.data))
	}
}
