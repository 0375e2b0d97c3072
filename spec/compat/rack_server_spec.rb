# frozen_string_literal: true

require 'rack'
require 'rack/lint'
require 'stringio'
require 'open3'
require 'uri' # Rack::Lint 2.2 parses authorities with URI without requiring it

# A Rack server in the few lines an application would write with the gem:
# a TCPServer, a fiber per connection, keep-alive, Debian's Rack with
# Rack::Lint checking both sides. Loaded by wrk (Debian's package) with 50
# keep-alive connections at once. Rack 2.2 on Debian 12, 3.1 on Debian 13.
RSpec.describe 'A spin-per-connection Rack server under wrk' do
  def rack_env(request_line, headers, body, port)
    method, target, version = request_line.split(' ', 3)
    path, query = target.split('?', 2)
    env = {
      'REQUEST_METHOD' => method, 'SCRIPT_NAME' => '', 'PATH_INFO' => path, 'QUERY_STRING' => query || '',
      'SERVER_NAME' => '127.0.0.1', 'SERVER_PORT' => port.to_s, 'SERVER_PROTOCOL' => version.strip,
      'rack.url_scheme' => 'http',
      'rack.input' => StringIO.new(body.b), 'rack.errors' => $stderr,
      'rack.multithread' => false, 'rack.multiprocess' => false, 'rack.run_once' => false
    }
    headers.each do |k, v|
      key = k.upcase.tr('-', '_')
      key = "HTTP_#{key}" unless %w[CONTENT_TYPE CONTENT_LENGTH].include?(key)
      env[key] = v
    end
    env['rack.version'] = Rack::VERSION if defined?(Rack::VERSION) # Rack 2 only
    env
  end

  # Serves the requests of one connection in order until the client closes
  # it (or asks to).
  def serve(conn, app, port)
    while (request = read_request(conn))
      line, headers, body = request
      status, response_headers, response_body = app.call(rack_env(line, headers, body, port))
      write_response(conn, status, response_headers, response_body)
      break if headers['connection'] == 'close'
    end
  rescue IOError, SystemCallError
    nil
  ensure
    conn.close
  end

  # [request line, headers (lower-case names), body], nil at EOF.
  def read_request(conn)
    line = conn.gets or return
    headers = {}
    while (h = conn.gets) && h != "\r\n"
      name, value = h.split(':', 2)
      headers[name.strip.downcase] = value.strip
    end
    [line, headers, headers['content-length'] ? conn.read(headers['content-length'].to_i) : '']
  end

  def write_response(conn, status, headers, body)
    out = +"HTTP/1.1 #{status} #{Rack::Utils::HTTP_STATUS_CODES[status]}\r\n"
    headers.each { |name, value| out << "#{name}: #{value}\r\n" }
    out << "\r\n"
    body.each { |chunk| out << chunk }
    body.close if body.respond_to?(:close)
    conn.write(out)
  end

  it 'serves 50 concurrent keep-alive clients on 50 connections, every response a 200, and lets them all go' do
    requests = 0
    app = Rack::Lint.new(lambda do |env|
      requests += 1
      body = "hello #{env['PATH_INFO']}"
      [200, { 'content-type' => 'text/plain', 'content-length' => body.bytesize.to_s }, [body]]
    end)
    server = TCPServer.new('127.0.0.1', 0)
    port = server.addr[1]
    accepted = 0
    connections = []
    acceptor = spin do
      loop do
        conn = server.accept
        accepted += 1
        connections << spin { serve(conn, app, port) }
      end
    end
    fds_before = Dir.children('/proc/self/fd').size
    out, ticks = with_ticker(0.02) do
      out, status = Open3.capture2e('wrk', '-t2', '-c50', '-d2s', "http://127.0.0.1:#{port}/x")
      expect(status).to be_success
      out
    end
    done = out[/(\d+) requests in/, 1].to_i
    expect(out).not_to match(/Socket errors|Non-2xx/)
    expect(done).to be >= 1000
    expect(requests).to be >= done # wrk counts only completed responses
    # Keep-alive: one connection per client, none reopened (wrk also opens
    # one probe connection before its clients, with any server).
    expect(accepted).to eq(51)
    expect(ticks).to be >= 20 # other fibers ran throughout
    # wrk closed its connections: every connection fiber ends, its fd closed.
    Fiber.await(*connections)
    expect(Dir.children('/proc/self/fd').size).to be <= fds_before
  ensure
    acceptor&.stop
    server&.close
  end
end
