# frozen_string_literal: true

require_relative 'spec_helper'
require 'polyphony/http'
require_relative 'support/http_server'
require 'net/http'
require 'rack'
require 'rack/lint'
require 'sinatra/base'

# Polyphony::HTTP::RackAdapter under Rack::Lint (Debian's ruby-rack), an
# unmodified Sinatra app, `rackup -s polyphony`, the polyphony-http
# executable with workers, and TLS with ALPN.
RSpec.describe 'Polyphony::HTTP with Rack' do
  include HTTPServerHelpers

  def serve(app, **opts)
    start_http_server(**opts, &Polyphony::HTTP::RackAdapter.new(app))
  end

  def get(path, **headers)
    Net::HTTP.start('127.0.0.1', @port) { |h| h.get(path, headers) }
  end

  def lint(&app) = Rack::Lint.new(app)

  it 'passes Rack::Lint with a plain request, and gives the env the request' do
    seen = nil
    serve(lint do |env|
      seen = env.slice('REQUEST_METHOD', 'PATH_INFO', 'QUERY_STRING', 'SERVER_NAME', 'SERVER_PORT',
                       'HTTP_X_FOO', 'rack.url_scheme', 'SERVER_PROTOCOL')
      [200, { 'content-type' => 'text/plain' }, ['hello ', 'world']]
    end)
    res = get('/p/q?a=1', 'X-Foo' => 'bar')
    expect([res.code, res.body, @log]).to eq(['200', 'hello world', []])
    expect(seen).to eq('REQUEST_METHOD' => 'GET', 'PATH_INFO' => '/p/q', 'QUERY_STRING' => 'a=1',
                       'SERVER_NAME' => '127.0.0.1', 'SERVER_PORT' => @port.to_s, 'HTTP_X_FOO' => 'bar',
                       'rack.url_scheme' => 'http', 'SERVER_PROTOCOL' => 'HTTP/1.1')
  end

  it 'streams rack.input, which reads and gets (Lint)' do
    serve(lint do |env|
      input = env['rack.input']
      first = input.gets
      rest = input.read
      [200, { 'content-type' => 'text/plain' }, ["#{first.inspect} #{rest.bytesize} #{input.read.inspect}"]]
    end)
    body = "line one\n#{"x\n" * 100_000}"
    res = Net::HTTP.start('127.0.0.1', @port) { |h| h.post('/', body) }
    expect([res.body, @log]).to eq(['"line one\\n" 200000 ""', []])
  end

  # Rack 3 no longer asks for `rewind` (its Lint hides it); ours keeps what
  # it read so that Rack 2 apps can rewind.
  it 'rewinds rack.input and iterates its lines' do
    serve(lambda do |env|
      input = env['rack.input']
      input.read(10)
      input.rewind
      lines = []
      input.each { |l| lines << l }
      [200, {}, ["#{lines.size} #{lines.first.inspect} #{input.size}"]]
    end)
    body = "line one\n#{"x\n" * 700_000}" # past the in-memory spool
    res = Net::HTTP.start('127.0.0.1', @port) { |h| h.post('/', body) }
    expect([res.body, @log]).to eq(["700001 \"line one\\n\" #{body.bytesize}", []])
  end

  it 'streams a body that responds to each, chunked (Lint)' do
    body = Object.new
    def body.each
      3.times { |i| yield "chunk #{i}\n" }
    end
    serve(lint { |_env| [200, { 'content-type' => 'text/plain' }, body] })
    res = get('/')
    expect([res['transfer-encoding'], res.body, @log]).to eq(['chunked', "chunk 0\nchunk 1\nchunk 2\n", []])
  end

  it 'serves a file body (to_path) with its length' do
    dir = Dir.mktmpdir
    File.binwrite(File.join(dir, 'f.bin'), 'z' * 100_000)
    files = defined?(Rack::Files) ? Rack::Files : Rack::File
    serve(lint { |env| files.new(dir).call(env) })
    res = get('/f.bin')
    expect([res.code, res['content-length'], res.body.bytesize, @log]).to eq(['200', '100000', 100_000, []])
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  it 'supports full hijack' do
    serve(lambda do |env|
      io = env['rack.hijack'].call
      io.write("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
      io.close
      [200, {}, []]
    end)
    expect(get('/').body).to eq('hijacked')
    expect(@log).to eq([])
  end

  it 'supports partial hijack (Lint)' do
    serve(lint do |_env|
      [200, { 'content-type' => 'text/plain', 'rack.hijack' => lambda { |io|
        io.write('partial')
        io.close
      } }, []]
    end)
    expect(get('/').body).to eq('partial')
    expect(@log).to eq([])
  end

  it 'hands a body that only responds to call (Rack 3 streaming) the socket after the head' do
    body = lambda do |stream|
      stream.write('streamed')
      stream.close
    end
    serve(->(_env) { [200, { 'content-type' => 'text/plain' }, body] })
    expect(get('/').body).to eq('streamed')
    expect(@log).to eq([])
  end

  it 'runs rack.after_reply once the response is out' do
    order = []
    serve(lambda do |env|
      env['rack.after_reply'] << -> { order << :after }
      order << :app
      [200, {}, ['x']]
    end)
    get('/')
    move_on_after(2) { snooze until order.size == 2 }
    expect(order).to eq(%i[app after])
  end

  it 'keeps a bounded cache of env keys whatever header names clients send' do
    serve(->(env) { [200, {}, [env.keys.grep(/\AHTTP_X_/).size.to_s]] })
    Net::HTTP.start('127.0.0.1', @port) do |h|
      10.times do |r|
        headers = Array.new(90) { |i| ["X-#{r}-#{i}", 'v'] }.to_h
        expect(h.get('/', headers).body).to eq('90')
      end
    end
    keys = Polyphony::HTTP::RackAdapter.instance_variable_get(:@env_keys)
    expect(keys.size).to be <= Polyphony::HTTP::RackAdapter::ENV_KEYS_MAX
  end

  it 'answers 500 when the app raises, and logs it' do
    serve(->(_env) { raise 'app failure' })
    expect(get('/').code).to eq('500')
    expect(@log.join).to include('app failure')
  end

  it 'serves an unmodified Sinatra app' do
    app = Class.new(Sinatra::Base) do
      set :environment, :test
      get('/hi/:name') { "Hi #{params[:name]}" }
      post('/echo') { request.body.read.reverse }
      get('/stream') { stream { |out| 3.times { |i| out << "s#{i}" } } }
    end
    serve(app)
    Net::HTTP.start('127.0.0.1', @port) do |h|
      expect(h.get('/hi/there').body).to eq('Hi there')
      # text/plain: a form body would be parsed (and consumed) by Rack.
      expect(h.post('/echo', 'abc', 'Content-Type' => 'text/plain').body).to eq('cba')
      expect(h.get('/stream').body).to eq('s0s1s2')
      expect(h.get('/nope').code).to eq('404')
    end
    expect(@log).to eq([])
  end

  describe 'TLS' do
    def tls_client
      ctx = OpenSSL::SSL::SSLContext.new
      ctx.verify_mode = OpenSSL::SSL::VERIFY_NONE
      ctx.alpn_protocols = %w[h2 http/1.1]
      ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', @port), ctx)
      ssl.sync_close = true
      ssl.connect
      ssl
    end

    it 'negotiates http/1.1 by ALPN and serves over TLS' do
      serve(->(env) { [200, {}, [env['rack.url_scheme']]] }, tls: server_context)
      ssl = tls_client
      expect(ssl.alpn_protocol).to eq('http/1.1')
      ssl.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      expect(ssl.read).to end_with("\r\n\r\nhttps")
    ensure
      ssl&.close
    end

    it 'closes the sockets of connections stopped mid-handshake' do
      fds = -> { Dir['/proc/self/fd/*'].size }
      before = fds.call
      serve(->(_env) { [200, {}, ['ok']] }, tls: server_context)
      clients = Array.new(5) { TCPSocket.new('127.0.0.1', @port) } # no handshake: they wait
      move_on_after(5) { snooze until @server.connection_count == 5 }
      expect(@server.connection_count).to eq(5)
      @server.stop(graceful: false)
      @server_fiber.await
      clients.each(&:close)
      expect(fds.call).to eq(before)
    end

    it 'closes only the connection whose handshake fails' do
      serve(->(_env) { [200, {}, ['ok']] }, tls: server_context)
      plain = TCPSocket.new('127.0.0.1', @port)
      plain.write("GET / HTTP/1.1\r\n\r\n")
      closed = move_on_after(5, with_value: :open) do
        plain.read
      rescue Errno::ECONNRESET
        :reset
      end
      expect(closed).not_to eq(:open)
      ssl = tls_client
      ssl.write("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
      expect(ssl.read).to end_with('ok')
      expect(@log).to eq([])
    ensure
      plain&.close
      ssl&.close
    end
  end

  describe 'launchers' do
    let(:config) do
      path = File.join(Dir.mktmpdir, 'config.ru')
      File.write(path, "run ->(env) { [200, { 'content-type' => 'text/plain' }, [\"pid \#{Process.pid}\"]] }\n")
      path
    end

    def wait_until_serving(port, pid, timeout = 20)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      loop do
        return Net::HTTP.get(URI("http://127.0.0.1:#{port}/"))
      rescue SystemCallError, EOFError
        raise "server exited: #{Process.wait2(pid, Process::WNOHANG).inspect}" if Process.wait2(pid, Process::WNOHANG)
        raise 'server did not start' if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.1
      end
    end

    def stop_process(pid)
      Process.kill('TERM', pid)
      status = move_on_after(15) { Process.wait2(pid)[1] }
      return status if status

      Process.kill('KILL', pid)
      Process.wait2(pid)[1]
    end

    def env = { 'RUBYLIB' => SpecHelpers::LIB }

    def free_port
      s = TCPServer.new('127.0.0.1', 0)
      s.local_address.ip_port
    ensure
      s&.close
    end

    it 'runs under rackup -s polyphony' do
      port = free_port
      rackup = ENV['RACKUP'] || 'rackup'
      pid = Process.spawn(env, rackup, '-s', 'polyphony', '-o', '127.0.0.1', '-p', port.to_s, config,
                          out: File::NULL, err: File::NULL)
      expect(wait_until_serving(port, pid)).to match(/\Apid \d+\z/)
      expect(stop_process(pid).signaled?).to be(false)
    end

    it 'runs polyphony-http over TLS with --tls-cert and --tls-key' do
      cert, key = self_signed_cert
      dir = Dir.mktmpdir
      File.write(File.join(dir, 'cert.pem'), cert.to_pem)
      File.write(File.join(dir, 'key.pem'), key.to_pem)
      port = free_port
      exe = File.expand_path('../exe/polyphony-http', __dir__)
      pid = Process.spawn(env, SpecHelpers::RUBY, exe, config, '-b', '127.0.0.1', '-p', port.to_s,
                          '--tls-cert', File.join(dir, 'cert.pem'), '--tls-key', File.join(dir, 'key.pem'),
                          out: File::NULL, err: File::NULL)
      body = nil
      move_on_after(20) do
        loop do
          ctx = OpenSSL::SSL::SSLContext.new
          ctx.verify_mode = OpenSSL::SSL::VERIFY_NONE
          ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new('127.0.0.1', port), ctx)
          ssl.sync_close = true
          ssl.connect
          ssl.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          body = ssl.read
          ssl.close
          break
        rescue SystemCallError
          sleep 0.1
        end
      end
      expect(body).to match(/\r\n\r\npid \d+\z/)
      expect(stop_process(pid).exitstatus).to eq(0)
    ensure
      FileUtils.rm_rf(dir) if dir
    end

    it 'runs polyphony-http with two workers and replaces a killed one' do
      port = free_port
      exe = File.expand_path('../exe/polyphony-http', __dir__)
      pid = Process.spawn(env, SpecHelpers::RUBY, exe, config, '-b', '127.0.0.1', '-p', port.to_s, '-w', '2',
                          out: File::NULL, err: File::NULL)
      wait_until_serving(port, pid)
      workers = -> { `pgrep -P #{pid}`.split.map(&:to_i).sort }
      move_on_after(10) { sleep 0.1 until workers.call.size == 2 }
      before = workers.call
      expect(before.size).to eq(2)
      Process.kill('KILL', before.first)
      move_on_after(10) { sleep 0.1 until (workers.call - before).size == 1 && workers.call.size == 2 }
      after = workers.call
      expect(after.size).to eq(2)
      expect(after).not_to include(before.first)
      pids = Array.new(20) { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) }
      expect(pids.uniq - after.map { |p| "pid #{p}" }).to eq([])
      expect(stop_process(pid).exitstatus).to eq(0)
      expect(workers.call).to eq([])
    end
  end
end
