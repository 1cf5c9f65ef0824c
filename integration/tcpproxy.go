package integration

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// TCPProxy forwards connections from a port of 127.0.0.1 to a target, until
// Close cuts every connection and stops listening: a registry that goes
// away under a client, without stopping the registry itself.
type TCPProxy struct {
	Host   string // 127.0.0.1:PORT to connect to
	target string
	ln     net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// StartTCPProxy listens on a free port of 127.0.0.1 and forwards to target.
func StartTCPProxy(target string) (*TCPProxy, error) {
	return StartTCPProxyAt("127.0.0.1:0", target)
}

// StartTCPProxyAt listens on addr (say, the address of a closed proxy, to
// bring a registry "back") and forwards to target.
func StartTCPProxyAt(addr, target string) (*TCPProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &TCPProxy{Host: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *TCPProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			return
		}
		p.wg.Add(2)
		go p.pipe(client, server)
		go p.pipe(server, client)
	}
}

// track registers a connection pair; false (both closed) once closed.
func (p *TCPProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *TCPProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Close stops accepting and resets every open connection; it is idempotent.
func (p *TCPProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
