# frozen_string_literal: true

require_relative 'spec_helper'
require 'digest'

RSpec.describe 'OpenSSL (fiber-aware TLS)' do
  def tls_echo_server
    serve_echo(Polyphony::Net.tcp_listen('127.0.0.1', 0, secure_context: server_context))
  end

  it 'echoes 1 MB from 10 concurrent clients, verified by checksum, while other fibers run' do
    server = tls_echo_server
    port = server.to_io.addr[1]
    clients = Array.new(10) do
      spin do
        s = Polyphony::Net.tcp_connect('localhost', port, secure_context: client_context)
        data = Random.bytes(1 << 20)
        writer = spin { s.write(data) }
        got = s.read(data.bytesize)
        writer.await
        s.close
        Digest::SHA256.digest(got) == Digest::SHA256.digest(data)
      end
    end
    results, ticks = with_ticker(0.005) { Fiber.await(*clients) }
    expect(results).to all(be(true))
    expect(ticks).to be > 5
  end

  it 'read(n) returns exactly n bytes, read() reads until EOF, readpartial and gets work' do
    server = Polyphony::Net.tcp_listen('127.0.0.1', 0, secure_context: server_context)
    spin do
      c = server.accept
      c.write("line one\n", 'abcdefgh', 'tail')
      c.close
    end
    s = Polyphony::Net.tcp_connect('127.0.0.1', server.to_io.addr[1], secure_context: client_context)
    expect(s).to be_a(OpenSSL::SSL::SSLSocket)
    expect(s.gets).to eq("line one\n")
    expect(s.read(3)).to eq('abc')
    expect(s.readpartial(2)).to eq('de')
    expect(s.read).to eq('fghtail')
    expect(s.read(1)).to be_nil
    expect { s.sysread(1) }.to raise_error(EOFError)
  end

  it 'read_loop yields chunks until the peer closes' do
    server = Polyphony::Net.tcp_listen('127.0.0.1', 0, secure_context: server_context)
    spin do
      c = server.accept
      3.times { |i| c.write("c#{i}") && sleep(0.01) }
      c.close
    end
    s = Polyphony::Net.tcp_connect('127.0.0.1', server.to_io.addr[1], secure_context: client_context)
    chunks = []
    expect(s.read_loop { |d| chunks << d }).to equal(s)
    expect(chunks.join).to eq('c0c1c2')
  end

  it 'a failed handshake raises in the client only; accept_loop keeps serving' do
    server = tls_echo_server
    port = server.to_io.addr[1]
    untrusting = OpenSSL::SSL::SSLContext.new.tap { |c| c.set_params(verify_mode: OpenSSL::SSL::VERIFY_PEER) }
    expect do
      Polyphony::Net.tcp_connect('localhost', port, secure_context: untrusting)
    end.to raise_error(OpenSSL::SSL::SSLError)
    s = Polyphony::Net.tcp_connect('localhost', port, secure_context: client_context)
    s.write('still serving')
    expect(s.readpartial(100)).to eq('still serving')
  end

  it 'a plain TCP client that hangs up mid-handshake does not stop the server' do
    server = tls_echo_server
    port = server.to_io.addr[1]
    raw = TCPSocket.new('127.0.0.1', port)
    raw.write("not tls\r\n\r\n")
    raw.close
    s = Polyphony::Net.tcp_connect('localhost', port, secure_context: client_context)
    s.write('ok')
    expect(s.readpartial(10)).to eq('ok')
  end

  it 'negotiates ALPN' do
    ctx = server_context
    Polyphony::Net.setup_alpn(ctx, %w[h2 http/1.1])
    server = Polyphony::Net.tcp_listen('127.0.0.1', 0, secure_context: ctx)
    accepted = spin { server.accept }
    s = Polyphony::Net.tcp_connect('localhost', server.to_io.addr[1],
                                   secure_context: client_context, alpn_protocols: %w[http/1.1])
    expect(s.alpn_protocol).to eq('http/1.1')
    expect(accepted.await.alpn_protocol).to eq('http/1.1')
  end

  it 'SSLSocket wraps a real TCPSocket and delegates the socket helpers' do
    server = tls_echo_server
    sock = TCPSocket.new('127.0.0.1', server.to_io.addr[1])
    ssl = OpenSSL::SSL::SSLSocket.new(sock, client_context)
    ssl.hostname = 'localhost'
    expect(ssl.connect).to equal(ssl)
    expect(ssl.no_delay).to equal(ssl)
    expect(ssl.to_io).to equal(sock)
    expect(ssl.__read_method__).to eq(:readpartial)
    ssl.puts('hi')
    expect(ssl.gets).to eq("hi\n")
    ssl.close
  end
end

RSpec.describe OpenSSL::SSL::SSLServer do
  it 'gives its context back with ctx' do
    ctx = OpenSSL::SSL::SSLContext.new
    tcp = TCPServer.new('127.0.0.1', 0)
    server = described_class.new(tcp, ctx)
    expect(server.ctx).to equal(ctx)
  ensure
    tcp&.close
  end
end
