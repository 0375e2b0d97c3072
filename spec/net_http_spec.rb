# frozen_string_literal: true

require_relative 'spec_helper'
require 'net/http'

RSpec.describe 'Net::HTTP (unmodified, over the fiber-aware sockets)' do
  # A local HTTP/1.1 server answering every request after `delay` seconds.
  def slow_server(delay, secure: false)
    opts = secure ? { secure_context: server_context } : {}
    server = Polyphony::Net.tcp_listen('127.0.0.1', 0, opts)
    spin do
      server.accept_loop do |conn|
        spin { serve(conn, delay) }
      end
    end
    server.to_io.addr[1]
  end

  def serve(conn, delay)
    while (line = conn.gets)
      next unless line == "\r\n"

      sleep delay
      conn.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
    end
  rescue IOError, SystemCallError, OpenSSL::SSL::SSLError
    nil
  ensure
    conn.close
  end

  it 'runs 20 concurrent requests against a 0.3 s server in about the time of one' do
    port = slow_server(0.3)
    t0 = monotonic
    requests = Array.new(20) { spin { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) } }
    expect(Fiber.await(*requests)).to all(eq('hello'))
    expect(monotonic - t0).to be < 1.0
  end

  it 'keeps a connection alive across requests' do
    port = slow_server(0)
    Net::HTTP.start('127.0.0.1', port) do |http|
      expect(Array.new(3) { http.get('/').body }).to eq(%w[hello hello hello])
    end
  end

  it 'read_timeout interrupts only the requesting fiber' do
    port = slow_server(1)
    http = Net::HTTP.new('127.0.0.1', port)
    http.read_timeout = 0.2
    error, ticks = with_ticker do
      http.get('/')
    rescue Net::ReadTimeout => e
      e
    end
    expect(error).to be_a(Net::ReadTimeout)
    expect(ticks).to be >= 10
  end

  it 'Timeout.timeout around a request is fiber-aware' do
    port = slow_server(1)
    other = spin do
      sleep 0.1
      :other_done
    end
    expect { Timeout.timeout(0.2) { Net::HTTP.get(URI("http://127.0.0.1:#{port}/")) } }.to raise_error(Timeout::Error)
    expect(other.await).to eq(:other_done)
  end

  it 'works over TLS (use_ssl) with the spec certificate' do
    port = slow_server(0.1, secure: true)
    store = OpenSSL::X509::Store.new
    store.add_cert(self_signed_cert[0])
    bodies = Array.new(5) do
      spin do
        http = Net::HTTP.new('localhost', port)
        http.use_ssl = true
        http.cert_store = store
        http.get('/').body
      end
    end
    expect(Fiber.await(*bodies)).to all(eq('hello'))
  end
end
