# frozen_string_literal: true

require_relative 'spec_helper'
require 'polyphony/http'
require_relative 'support/http_server'
require 'net/http'
require 'digest'
require 'stringio'

# Polyphony::HTTP (lib/polyphony/http/): the native handler API and the
# HTTP/1.1 protocol, with Net::HTTP and raw sockets as clients.
RSpec.describe 'Polyphony::HTTP server' do
  include HTTPServerHelpers

  def start(**opts, &) = start_http_server(**opts, &)

  def http(&)
    Net::HTTP.start('127.0.0.1', @port, &)
  end

  def raw
    s = TCPSocket.new('127.0.0.1', @port)
    yield s
  ensure
    s&.close
  end

  # Everything the server sends until it closes the connection.
  def exchange(bytes, wait: 5)
    raw do |s|
      s.write(bytes)
      out = +''
      move_on_after(wait) { loop { out << s.readpartial(65_536) } }
    rescue EOFError, Errno::ECONNRESET
      out
    end
  end

  def status_of(response) = response[%r{\AHTTP/1\.1 (\d+)}, 1]&.to_i

  describe 'requests' do
    it 'gives the handler the method, path, query, headers, protocol and peer' do
      seen = nil
      start do |req|
        seen = [req.method, req.path, req.query, req.query_string, req.headers['x-thing'], req.protocol,
                req.remote_addr]
        req.respond('ok', 'X-Reply' => 'yes', ':status' => 201)
      end
      res = http { |h| h.get('/a/b?x=1&y=two%20words', 'X-Thing' => 'T') }
      expect([res.code, res.body, res['x-reply']]).to eq(%w[201 ok yes])
      expect(seen).to eq(['GET', '/a/b', { 'x' => '1', 'y' => 'two words' }, 'x=1&y=two%20words', 'T',
                          'HTTP/1.1', '127.0.0.1'])
    end

    it 'reads a body only when the handler asks, whole or piece by piece' do
      start do |req|
        case req.path
        when '/all' then req.respond(req.read)
        when '/pieces'
          sizes = []
          req.each_chunk { |c| sizes << c.bytesize }
          req.respond(sizes.sum.to_s)
        end
      end
      data = Random.new(1).bytes(300_000)
      http do |h|
        expect(h.post('/all', data).body.b).to eq(data)
        expect(h.post('/pieces', data).body).to eq('300000')
      end
    end

    it 'is an IO-style body source: readpartial into one buffer, IO.copy_stream(req, io)' do
      bufs = []
      start do |req|
        case req.path
        when '/copy'
          out = StringIO.new(+''.b)
          n = IO.copy_stream(req, out)
          req.respond("#{n} #{Digest::SHA256.hexdigest(out.string)}")
        when '/pieces'
          buf = +''
          sizes = []
          begin
            loop do
              got = req.readpartial(5000, buf)
              sizes << got.bytesize
              bufs << got.equal?(buf)
            end
          rescue EOFError
            sizes << :eof << buf.bytesize
          end
          req.respond(sizes.last(2).inspect + (sizes[0..-3].all? { |z| z.between?(1, 5000) } ? ' ok' : ' bad'))
        end
      end
      data = Random.new(2).bytes(1_000_000)
      http do |h|
        expect(h.post('/copy', data).body).to eq("1000000 #{Digest::SHA256.hexdigest(data)}")
        expect(h.post('/pieces', data).body).to eq('[:eof, 0] ok')
        # The pipelined next request is intact after a body read to its end.
        expect(h.post('/copy', 'tiny').body).to eq("4 #{Digest::SHA256.hexdigest('tiny')}")
      end
      expect(bufs.uniq).to eq([true]) # the caller's buffer, every time
      res = exchange("POST /copy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" \
                     "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
      expect(res).to end_with("\r\n\r\n11 #{Digest::SHA256.hexdigest('hello world')}")
    end

    it 'decodes a chunked request body' do
      start { |req| req.respond(req.read) }
      res = exchange("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" \
                     "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
      expect(status_of(res)).to eq(200)
      expect(res).to end_with("\r\n\r\nhello world")
    end

    it 'serves pipelined requests in order on one connection' do
      start { |req| req.respond(req.path) }
      res = exchange("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n" \
                     "GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      expect(res.scan(%r{\r\n\r\n(/\d)})).to eq([['/1'], ['/2'], ['/3']])
    end

    it 'keeps a connection alive across requests (HTTP/1.1)' do
      conns = []
      start do |req|
        conns << req.connection
        req.respond('x')
      end
      http { |h| 3.times { h.get('/') } }
      expect(conns.uniq.size).to eq(1)
    end

    it 'closes after an HTTP/1.0 response unless asked to keep alive' do
      start { |req| req.respond('x') }
      res = exchange("GET / HTTP/1.0\r\n\r\n")
      expect(res).to include("Connection: close\r\n")
      res = exchange("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n")
      expect(res.scan('HTTP/1.1 200').size).to eq(2)
      expect(res).to include("Connection: keep-alive\r\n")
    end

    it 'honours Connection: close' do
      start { |req| req.respond('x') }
      res = exchange("GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n")
      expect(res.scan('HTTP/1.1 200').size).to eq(1)
    end

    it 'answers HEAD with the headers only' do
      start { |req| req.respond('twelve bytes') }
      res = exchange("HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
      expect(res).to include("Content-Length: 12\r\n")
      expect(res).to end_with("\r\n\r\n")
    end

    it 'sends 100 Continue only when the handler reads the body' do
      start do |req|
        req.path == '/read' ? req.respond(req.read) : req.respond('no thanks', ':status' => 417)
      end
      raw do |s|
        s.write("POST /read HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        expect(s.readpartial(100)).to eq("HTTP/1.1 100 Continue\r\n\r\n")
        s.write('body')
        expect(s.readpartial(1000)).to end_with("\r\n\r\nbody")
      end
      # A handler that answers without reading: no 100 Continue is sent.
      res = exchange("POST /unread HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
      expect(res).not_to include('100 Continue')
      expect(status_of(res)).to eq(417)
    end
  end

  describe 'responses' do
    it 'streams a chunked response' do
      start do |req|
        req.send_headers('Content-Type' => 'text/plain')
        3.times { |i| req.send_chunk("part #{i}\n") }
        req.finish
      end
      res = http { |h| h.get('/') }
      expect(res['transfer-encoding']).to eq('chunked')
      expect(res.body).to eq("part 0\npart 1\npart 2\n")
    end

    it 'redirects' do
      start { |req| req.redirect('/there', 301) }
      res = http { |h| h.get('/') }
      expect([res.code, res['location']]).to eq(['301', '/there'])
    end

    it 'serves a file, spliced, with its size' do
      path = File.join(Dir.tmpdir, "polyphony-http-#{Process.pid}.bin")
      data = Random.new(2).bytes(3_000_000)
      File.binwrite(path, data)
      start { |req| req.serve_file(req.path == '/missing' ? '/nonexistent' : path) }
      http do |h|
        res = h.get('/')
        expect(res['content-length']).to eq('3000000')
        expect(res.body.b == data).to be(true)
        expect(h.get('/missing').code).to eq('404')
      end
    ensure
      File.unlink(path) if path && File.exist?(path)
    end

    it 'answers 204 when the handler sends nothing' do
      start { |_req| nil }
      expect(http { |h| h.get('/') }.code).to eq('204')
    end
  end

  describe 'limits' do
    before do
      start(max_line: 100, max_head: 1000, max_headers: 10, max_body: 1000) do |req|
        req.respond(req.read.to_s)
      end
    end

    {
      'a long request line' => ["GET /#{'x' * 200} HTTP/1.1\r\n\r\n", 414],
      'too many headers' => ["GET / HTTP/1.1\r\n#{(1..20).map { |i| "h#{i}: x\r\n" }.join}\r\n", 431],
      'a head over its size' => ["GET / HTTP/1.1\r\n#{(1..9).map { |i| "h#{i}: #{'x' * 200}\r\n" }.join}\r\n", 431],
      'a body over its size' => ["POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n", 413],
      'a chunked body over its size' => [
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n#{'x' * 2048}\r\n", 413
      ],
      'invalid syntax' => ["GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", 400],
      'a bad Content-Length' => ["POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400],
      'two different Content-Lengths' => ["POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400],
      'Content-Length with Transfer-Encoding' =>
        ["POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400],
      'an unknown transfer coding' => ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
      'bad chunk encoding' => ["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400],
      'HTTP/0.9' => ["GET /\r\n\r\n", 505],
      'an unknown version' => ["GET / HTTP/2.0\r\n\r\n", 505]
    }.each do |what, (bytes, status)|
      it "answers #{status} to #{what} and closes, and keeps serving" do
        res = exchange(bytes)
        expect(status_of(res)).to eq(status)
        expect(res).to include("Connection: close\r\n")
        expect(http { |h| h.post('/', 'fine') }.body).to eq('fine')
      end
    end
  end

  # The native loop (ext/polyphony/src/ruby_api/http_connection.rs) serves
  # the requests without a body; Ruby the rest, on the same connection.
  describe 'the native connection loop' do
    def echo_server(**opts)
      start(**opts) do |req|
        body = req.read
        reply = [req.method, req.path, req.query_string.inspect, req.protocol, req.headers['x-n'],
                 req.host, body.inspect].join(' ')
        req.respond(reply, 'X-Count' => 7, 'Set-Cookie' => %w[a=1 b=2], 'X-Sym' => :s)
      end
    end

    let(:pipelined) do
      "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-N: 1\r\n\r\n" \
        "POST /b HTTP/1.1\r\nContent-Length: 3\r\nX-N: 2\r\n\r\nabc" \
        "HEAD /c HTTP/1.1\r\nX-N: 3\r\n\r\n" \
        "GET /d HTTP/1.0\r\nConnection: Keep-Alive\r\nX-N: 4\r\n\r\n" \
        "GET /e HTTP/1.1\r\nX-N: 5\r\nConnection: close\r\n\r\n"
    end

    def check_pipelined(res)
      heads = res.scan(%r{HTTP/1\.1 200 OK\r\n.*?\r\n\r\n}m)
      expect(heads.size).to eq(5)
      expect(heads).to all(include("X-Count: 7\r\n", "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n", 'X-Sym: s'))
      expect(heads[3]).to include('Connection: keep-alive')
      expect(heads[4]).to include('Connection: close')
      bodies = res.split(%r{HTTP/1\.1 200 OK\r\n.*?\r\n\r\n}m).drop(1)
      expect(bodies).to eq(['GET /a "x=1" HTTP/1.1 1 h nil', 'POST /b nil HTTP/1.1 2  "abc"', '',
                            'GET /d nil HTTP/1.0 4  nil', 'GET /e nil HTTP/1.1 5  nil'])
    end

    it 'serves pipelined requests of every kind in order, each with its own parts' do
      echo_server
      check_pipelined(exchange(pipelined))
    end

    it 'answers a handler that waited with its own request\'s method, version and socket' do
      # While /slow's handler sleeps, the HTTP/1.0 HEAD request on another
      # connection becomes the loop's latest, and its handler is still
      # sleeping when /slow's responds: that response must still be a whole
      # HTTP/1.1 one, on its own socket.
      started = []
      start do |req|
        started << req.path
        sleep(req.path == '/slow' ? 0.2 : 0.4)
        req.respond("body of #{req.path}")
      end
      slow = spin { exchange("GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n") }
      move_on_after(5) { sleep 0.01 until started.include?('/slow') }
      expect(started).to eq(['/slow'])
      other = raw do |s|
        s.write("HEAD /other HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        out = s.readpartial(65_536)
        out << s.readpartial(65_536) until out.include?("\r\n\r\n")
        out << s.readpartial(65_536) if move_on_after(0.1) { s.wait_readable }
        out
      end
      expect(other).to start_with('HTTP/1.1 200').and include("Connection: keep-alive\r\n")
      expect(other).to end_with("\r\n\r\n")
      res = slow.await
      expect(res).to start_with('HTTP/1.1 200').and include("Connection: close\r\n")
      expect(res).to end_with("\r\n\r\nbody of /slow")
    end

    it 'does the same with the requests in pieces and under GC.stress' do
      echo_server
      res = raw do |s|
        pipelined.bytes.each_slice(23) do |piece|
          s.write(piece.pack('C*'))
          sleep 0.002
        end
        out = +''
        GC.stress = true
        begin
          loop { out << s.readpartial(65_536) }
        rescue EOFError
          out
        ensure
          GC.stress = false
        end
      end
      check_pipelined(res)
    end

    it 'keeps a request the handler holds on to intact after the next one' do
      kept = []
      start do |req|
        kept << req
        req.respond('ok')
      end
      exchange("GET /one?a=1 HTTP/1.1\r\nX-N: 1\r\n\r\nGET /two HTTP/1.1\r\nX-N: 2\r\nConnection: close\r\n\r\n")
      expect(kept.map { |r| [r.path, r.query, r.headers['x-n'], r.method] })
        .to eq([['/one', { 'a' => '1' }, '1', 'GET'], ['/two', {}, '2', 'GET']])
    end

    it 'raises Polyphony::HTTP::Error on a second response, TypeError on headers that are no Hash' do
      errors = []
      start do |req|
        req.respond('first')
        [-> { req.respond('again') }, -> { req.send_headers }].each do |call|
          call.call
        rescue Polyphony::HTTP::Error => e
          errors << e.message
        end
      end
      expect(exchange("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")).to end_with('first')
      expect(errors).to eq(['response already sent'] * 2)
      start { |req| req.respond('x', [1]) }
      expect(status_of(exchange("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))).to eq(500)
    end

    it 'ends a connection idle past its timeout with parking off (its own deadline)' do
      start(park_after: nil, keep_alive_timeout: 0.2, head_timeout: 0.2) { |req| req.respond('x') }
      raw do |s|
        expect(move_on_after(5, with_value: :open) { s.read }).to eq('')
      end
      raw do |s|
        s.write("GET / HTTP/1.1\r\n\r\n")
        expect(s.readpartial(1000)).to end_with('x')
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        expect(move_on_after(5, with_value: :open) { s.read }).to eq('')
        expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t).to be_between(0.15, 4)
      end
      expect(@server.connection_count).to eq(0)
    end
  end

  describe 'timeouts' do
    it 'closes a connection whose head is not complete in time (408)' do
      start(head_timeout: 0.3) { |req| req.respond('x') }
      raw do |s|
        s.write("GET / HTTP/1.1\r\nHost: x\r\n")
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        out = +''
        begin
          loop { out << s.readpartial(1000) }
        rescue EOFError, Errno::ECONNRESET
          nil
        end
        expect(status_of(out)).to eq(408)
        expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t).to be < 5
      end
    end

    it 'closes an idle keep-alive connection' do
      start(keep_alive_timeout: 0.2) { |req| req.respond('x') }
      raw do |s|
        s.write("GET / HTTP/1.1\r\n\r\n")
        s.readpartial(1000)
        expect(move_on_after(5, with_value: :open) { s.read }).to eq('')
      end
    end

    it 'closes a connection whose body stalls' do
      start(body_timeout: 0.2) { |req| req.respond(req.read) }
      raw do |s|
        s.write("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        expect(move_on_after(5, with_value: :open) { s.read }).to eq('')
      end
      expect(@server.connection_count).to eq(0)
    end
  end

  describe 'failures' do
    it 'answers 500 for a handler exception, logs it, and serves other connections' do
      start { |req| req.path == '/boom' ? raise('kaboom') : req.respond('fine') }
      res = exchange("GET /boom HTTP/1.1\r\n\r\n")
      expect(status_of(res)).to eq(500)
      expect(@log.join).to include('kaboom')
      expect(http { |h| h.get('/') }.body).to eq('fine')
    end

    it 'ends quietly when a client leaves mid-response' do
      ended = nil
      start do |req|
        next req.respond('fine') unless req.path == '/forever'

        begin
          req.send_headers
          loop { req.send_chunk('x' * 65_536) }
        ensure
          ended = true
        end
      end
      raw do |s|
        s.write("GET /forever HTTP/1.1\r\n\r\n")
        s.readpartial(1000)
      end
      move_on_after(5) { snooze until ended && @server.connection_count.zero? }
      expect([ended, @server.connection_count, @log]).to eq([true, 0, []])
      expect(http { |h| h.get('/') }.body).to eq('fine')
    end
  end

  describe 'slow clients' do
    # p99 of `count` requests, each on a new connection.
    def p99_latency(count)
      times = Array.new(count) do
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        raw do |s|
          s.write("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
          s.read
        end
        Process.clock_gettime(Process::CLOCK_MONOTONIC) - t
      end
      times.sort[(count * 0.99).floor - 1]
    end

    it 'keeps serving normal clients at the same p99 with 1,000 slowloris clients connected' do
      start { |req| req.respond('ok') }
      base = p99_latency(300)
      # 1,000 connections trickling one header line every 200 ms, from a
      # child process.
      loris = Process.spawn(SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e', <<~RUBY)
        require 'polyphony'
        socks = Array.new(1000) { TCPSocket.new('127.0.0.1', #{@port}) }
        socks.each { |s| spin { s << "GET / HTTP/1.1\\r\\n"; loop { sleep 0.2; s << "X-Slow: 1\\r\\n" } } }
        sleep
      RUBY
      move_on_after(20) { snooze until @server.connection_count >= 1000 }
      expect(@server.connection_count).to be >= 1000
      sleep 0.3
      with_loris = p99_latency(300)
      # Generous for a busy 2-core machine: the figure is about 0.2 ms.
      expect(with_loris).to be < [base * 4, base + 0.02].max
      expect(@server.connection_count).to be >= 1000
    ensure
      if loris
        Process.kill('KILL', loris)
        Process.wait(loris)
      end
    end
  end

  # A keep-alive connection idle for `park_after` gives up its fiber and
  # waits in the server's parking set (docs/http.md, "Parking").
  describe 'parking' do
    def open_fds = Dir.children('/proc/self/fd').size

    # One request; its response (whose body is `body`), or what came of it
    # in 5 s.
    def get(sock, path = '/', body: path)
      sock.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n")
      out = +''
      move_on_after(5) do
        out << sock.readpartial(1000) until out.include?("\r\n\r\n") && out.end_with?(body)
      end
      out
    end

    def wait_until(limit = 5)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + limit
      sleep 0.01 until yield || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      yield
    end

    it 'parks an idle connection without a fiber and serves its next requests on it' do
      start(park_after: 0.05) { |req| req.respond(req.path) }
      raw do |s|
        expect(get(s, '/one')).to end_with('/one')
        expect(wait_until { @server.parked_count == 1 }).to be(true)
        expect(@server.connection_count).to eq(1)
        # No connection fiber left: only the server's own (its run, the
        # watchdog and the parker).
        expect(@server_fiber.children.size).to eq(2)
        # Pipelined after waking: both answered, in order.
        s.write("GET /two HTTP/1.1\r\nHost: x\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        out = +''
        out << s.readpartial(1000) until out.end_with?('/three')
        expect(out.scan(%r{/two|/three})).to eq(%w[/two /three])
        expect(wait_until { @server.parked_count == 1 }).to be(true)
        expect(get(s, '/four')).to end_with('/four')
      end
    end

    it 'keeps a Net::HTTP keep-alive session across parkings (GET and POST, one connection)' do
      peers = []
      start(park_after: 0.02) do |req|
        peers << req.connection.object_id
        req.respond("#{req.path} #{req.read&.bytesize}")
      end
      bodies = []
      http do |h|
        2.times do |i|
          bodies << h.get("/g#{i}").body
          expect(wait_until { @server.parked_count == 1 }).to be(true)
          bodies << h.post("/p#{i}", 'x' * 100_000).body
          expect(wait_until { @server.parked_count == 1 }).to be(true)
        end
      end
      expect(bodies).to eq(['/g0 ', '/p0 100000', '/g1 ', '/p1 100000'])
      expect(peers.uniq.size).to eq(1) # one connection, woken four times
    end

    it 'does not park a connection holding part of a pipelined head' do
      start(park_after: 0.02) { |req| req.respond(req.path) }
      raw do |s|
        s.write("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo")
        out = +''
        out << s.readpartial(1000) until out.end_with?('/a')
        sleep 0.2
        expect(@server.parked_count).to eq(0)
        s.write("st: x\r\n\r\n")
        out = +''
        move_on_after(5) { out << s.readpartial(1000) until out.end_with?('/b') }
        expect(out).to end_with('/b')
      end
    end

    it 'closes a parked connection at its keep-alive deadline, and one its client closed' do
      start(park_after: 0.02, keep_alive_timeout: 0.3) { |req| req.respond('x') }
      raw do |s|
        get(s, '/', body: 'x')
        expect(wait_until { @server.parked_count == 1 }).to be(true)
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        expect(move_on_after(5, with_value: :open) { s.read }).to eq('')
        expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t).to be < 4
      end
      expect(wait_until { @server.connection_count.zero? }).to be(true)
      fds = open_fds # the parking set's fd included
      raw do |s|
        get(s, '/', body: 'x')
        expect(wait_until { @server.parked_count == 1 }).to be(true)
      end
      expect(wait_until { @server.connection_count.zero? }).to be(true)
      expect(open_fds).to eq(fds)
    end

    it 'loses no request that arrives as the connection parks (200 races)' do
      start(park_after: 0.002) { |req| req.respond(req.path) }
      raw do |s|
        200.times do |i|
          sleep(rand * 0.004)
          expect(get(s, "/r#{i}")).to end_with("/r#{i}")
        end
      end
    end

    it 'closes parked connections on a graceful stop, leaking no fd' do
      fds = open_fds
      start(park_after: 0.02) { |req| req.respond('x') }
      socks = Array.new(20) { TCPSocket.new('127.0.0.1', @port) }
      socks.each { |s| get(s, '/', body: 'x') }
      expect(wait_until { @server.parked_count == 20 }).to be(true)
      @server.stop(graceful: true)
      @server_fiber.await
      expect(socks.map { |s| move_on_after(5, with_value: :open) { s.read } }).to eq([''] * 20)
      socks.each(&:close)
      expect(open_fds).to eq(fds)
    end

    it 'never parks with park_after: nil, nor a TLS connection' do
      start(park_after: nil) { |req| req.respond('x') }
      raw do |s|
        get(s, '/', body: 'x')
        sleep 0.6
        expect(@server.parked_count).to eq(0)
        expect(@server.connection_count).to eq(1)
      end
    end

    it 'keeps serving when the connection is woken by a hang-up mid-park under GC.stress' do
      start(park_after: 0.01) { |req| req.respond('x') }
      3.times do
        raw do |s|
          get(s, '/', body: 'x')
          wait_until { @server.parked_count == 1 }
        end
        GC.stress = true
        wait_until(2) { @server.connection_count.zero? }
        GC.stress = false
      end
      expect(@server.connection_count).to eq(0)
      raw { |s| expect(get(s, '/', body: 'x')).to end_with('x') }
    ensure
      GC.stress = false
    end
  end

  describe 'heap room' do
    # Free heap slots, after a full GC, in a fresh Ruby whose server started
    # with `heap_room: room`.
    def free_slots_with(room)
      code = <<~RUBY
        require 'polyphony/http'
        server = Polyphony::HTTP::Server.new(Polyphony::Net.tcp_listen('127.0.0.1', 0), heap_room: #{room}) {}
        f = spin { server.run }
        snooze
        GC.start
        print GC.stat(:heap_free_slots)
        server.stop
        f.await
      RUBY
      out, err, status = run_ruby(code)
      expect(status).to be_success, err
      Integer(out)
    end

    it 'makes room for heap_room objects in Ruby\'s heap when the server starts' do
      without = free_slots_with(0)
      with = free_slots_with(300_000)
      expect(with - without).to be >= 200_000
    end

    it 'refuses a heap_room that is not a count' do
      listener = Polyphony::Net.tcp_listen('127.0.0.1', 0)
      [-1, 1.5, 'many'].each do |room|
        expect { Polyphony::HTTP::Server.new(listener, heap_room: room) { nil } }
          .to raise_error(ArgumentError, /heap_room/)
      end
      expect(Polyphony::HTTP::Server.new(listener, heap_room: nil) { nil }.options[:heap_room]).to be_nil
    ensure
      listener&.close
    end
  end

  describe 'graceful stop' do
    it 'finishes requests in progress, ends idle connections and refuses new ones' do
      start { |req| req.path == '/slow' ? (sleep(0.3) && nil) || req.respond('slow done') : req.respond('x') }
      idle = TCPSocket.new('127.0.0.1', @port)
      idle.write("GET / HTTP/1.1\r\n\r\n")
      idle.readpartial(1000)
      slow = spin { http { |h| h.get('/slow') }.body }
      sleep 0.1
      @server.stop(graceful: true)
      expect(slow.await).to eq('slow done')
      expect(move_on_after(5, with_value: :open) { idle.read }).to eq('')
      @server_fiber.await
      expect { TCPSocket.new('127.0.0.1', @port) }.to raise_error(Errno::ECONNREFUSED)
    ensure
      idle&.close
    end
  end
end
