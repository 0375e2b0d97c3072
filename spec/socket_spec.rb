# frozen_string_literal: true

require_relative 'spec_helper'
require 'zlib'
require 'tmpdir'

RSpec.describe 'Sockets' do
  def echo_server
    serve_echo(TCPServer.new('127.0.0.1', 0))
  end

  describe 'TCPSocket / TCPServer (real sockets)' do
    it 'TCPSocket.new gives a real, connected TCPSocket' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      accepted = spin { server.accept }
      sock = TCPSocket.new('127.0.0.1', port)
      expect(sock).to be_a(TCPSocket)
      expect(sock.fileno).to be > 2
      expect(sock.peeraddr[1]).to eq(port)
      expect(sock.addr[0]).to eq('AF_INET')
      expect(sock.remote_address.ip_port).to eq(port)
      expect(sock.io).to equal(sock)
      expect(sock.sync).to be(true)
      expect(sock.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)).to eq(0)
      conn = accepted.await
      expect(conn).to be_a(TCPSocket)
      expect(conn.peeraddr[1]).to eq(sock.addr[1])
      sock << "hi\n"
      expect(conn.gets).to eq("hi\n")
      [sock, conn, server].each(&:close)
    end

    it 'resolves names, trying each address (localhost reaches an IPv4-only server)' do
      server = echo_server
      sock = TCPSocket.new('localhost', server.addr[1])
      sock << 'x'
      expect(sock.readpartial(10)).to eq('x')
      sock.close
    end

    it 'binds to a local host/port when given' do
      server = TCPServer.new('127.0.0.1', 0)
      spin { server.accept }
      sock = TCPSocket.new('127.0.0.1', server.addr[1], '127.0.0.1', 0)
      expect(sock.addr[3]).to eq('127.0.0.1')
      sock.close
    end

    it 'connecting lets other fibers run and raises ECONNREFUSED in the caller only' do
      port = TCPServer.open('127.0.0.1', 0).then do |s|
        s.addr[1].tap { s.close }
      end
      other = spin { :ran }
      expect { TCPSocket.new('127.0.0.1', port) }.to raise_error(Errno::ECONNREFUSED)
      expect(other.await).to eq(:ran)
    end

    it 'raises clear errors for bad arguments' do
      expect { TCPSocket.new('127.0.0.1', 'no-such-service-xyz') }.to raise_error(SocketError)
      expect { TCPSocket.new('127.0.0.1', [1]) }.to raise_error(TypeError)
      expect { Polyphony.backend_connect_addr(Socket.new(:INET, :STREAM), 'x') }.to raise_error(ArgumentError)
      expect { Polyphony.backend_connect_addr(Socket.new(:INET, :STREAM), :sym) }.to raise_error(TypeError)
    end

    it 'a server accepts 100 simultaneous connects at once (real backlog)' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      clients = Array.new(100) { spin { TCPSocket.new('127.0.0.1', port) } }
      socks = Fiber.await(*clients)
      conns = Array.new(100) { server.accept }
      expect(conns.map(&:class).uniq).to eq([TCPSocket])
      (socks + conns).each(&:close)
    end

    it 'serves 1,000 concurrent connections to an echo server' do
      server = echo_server
      port = server.addr[1]
      clients = Array.new(1000) do |i|
        spin do
          s = TCPSocket.new('127.0.0.1', port)
          s << "message #{i}\n"
          line = s.gets
          s.close
          line
        end
      end
      lines = Fiber.await(*clients)
      expect(lines).to eq(Array.new(1000) { |i| "message #{i}\n" })
    end

    it 'recv returns nil at EOF, honours MSG_PEEK and fills an outbuf' do
      a, b = UNIXSocket.pair
      a << 'peek'
      expect(b.recv(10, Socket::MSG_PEEK)).to eq('peek')
      buf = +'old'
      expect(b.recv(10, 0, buf)).to equal(buf)
      expect(buf).to eq('peek')
      a.close
      expect(b.recv(10)).to be_nil
      expect { b.recv(-1) }.to raise_error(ArgumentError)
    end

    it 'read(n) returns nil at EOF; readpartial raises EOFError' do
      a, b = UNIXSocket.pair
      a << 'abc'
      a.close
      expect(b.read(5)).to eq('abc')
      expect(b.read(5)).to be_nil
      expect { b.readpartial(5) }.to raise_error(EOFError)
    end

    it 'read/write on a closed socket raise IOError' do
      a, = UNIXSocket.pair
      a.close
      expect { a.read(1) }.to raise_error(IOError)
      expect { a.write('x') }.to raise_error(IOError)
      expect { a.recv(1) }.to raise_error(IOError)
    end
  end

  describe 'streaming and failures' do
    it 'moves 200 MB through a socket pair between two fibers, verified by checksum' do
      a, b = UNIXSocket.pair
      chunk = Random.bytes(1 << 20)
      writer = spin do
        crc = 0
        200.times do |i|
          data = chunk.byteslice(i % 1000, chunk.bytesize - (i % 1000))
          a.write(data)
          crc = Zlib.crc32(data, crc)
        end
        a.close
        crc
      end
      crc = 0
      total = 0
      b.read_loop(1 << 16) do |data|
        crc = Zlib.crc32(data, crc)
        total += data.bytesize
      end
      expect(crc).to eq(writer.await)
      expect(total).to eq((0...200).sum { |i| chunk.bytesize - (i % 1000) })
    end

    it 'a peer that closes mid-transfer: the reader gets the bytes sent, then EOF' do
      server = TCPServer.new('127.0.0.1', 0)
      spin do
        c = server.accept
        c.write('x' * 10_000)
        c.close
      end
      s = TCPSocket.new('127.0.0.1', server.addr[1])
      expect(s.read(1_000_000)&.bytesize).to eq(10_000)
      expect(s.read(1)).to be_nil
    end

    it 'a peer that resets: ECONNRESET or EPIPE in the calling fiber only' do
      server = TCPServer.new('127.0.0.1', 0)
      spin do
        c = server.accept
        c.readpartial(10)
        c.setsockopt(Socket::Option.linger(true, 0))
        c.close
      end
      s = TCPSocket.new('127.0.0.1', server.addr[1])
      bystander = spin { sleep 0.05 }
      s << 'go'
      sleep 0.05
      expect do
        loop do
          s.write('y' * 65_536)
          s.readpartial(10)
        end
      end.to raise_error(SystemCallError) { |e| expect([Errno::ECONNRESET, Errno::EPIPE]).to include(e.class) }
      bystander.await
      expect(bystander.dead?).to be(true)
    end

    # A socket write on io_uring is a send in the ring, from a copy the
    # operation owns (short strings: a pooled buffer; long ones: a frozen
    # String). Given up in flight, it is cancelled before the next write.
    [100, 4_000_000].each do |size|
      it "a #{size}-byte write given up in flight sends a prefix; the caller's string is free at once" do
        a, b = UNIXSocket.pair
        # Fill the send buffer so that the write below has to wait.
        loop { break if a.write_nonblock('f' * 65_536, exception: false) == :wait_writable }
        data = 'w' * size
        expect(move_on_after(0.05) { a.write(data) }).to be_nil
        data.replace('changed') # no "string locked", no effect on the bytes sent
        reader = spin { b.read }
        a.write('z' * 1000)
        a.close
        got = reader.await
        expect(got).to match(/\Af+w*z{1000}\z/)
        expect(got.count('w')).to be < size
      end
    end

    it 'sends short and long strings intact under GC.stress' do
      a, b = UNIXSocket.pair
      strings = [+'short', 'x' * 9000, Random.bytes(100), 'y' * 200_000]
      reader = spin { b.read }
      GC.stress = true
      begin
        strings.each { |s| a.write(s) }
      ensure
        GC.stress = false
      end
      a.close
      expect(reader.await).to eq(strings.join.b)
    end
  end

  describe 'Socket' do
    it 'accept returns [socket, addrinfo] (stdlib) and connect(addrinfo) is fiber-aware' do
      server = Socket.new(:INET, :STREAM)
      server.bind(Addrinfo.tcp('127.0.0.1', 0))
      server.listen(16)
      addr = server.local_address
      client = Socket.new(:INET, :STREAM)
      connector = spin { client.connect(addr) }
      conn, ai = server.accept
      expect(connector.await).to eq(0)
      expect(conn).to be_a(Socket)
      expect(ai).to be_a(Addrinfo)
      client.write('sock')
      expect(conn.recv(10)).to eq('sock')
      spin do
        sleep 0.02
        client.write('from')
      end
      data, = conn.recvfrom(10)
      expect(data).to eq('from')
    end

    it 'accept_loop yields TCPSockets' do
      server = Socket.new(:INET, :STREAM)
      server.bind(Addrinfo.tcp('127.0.0.1', 0))
      server.listen(16)
      got = Polyphony::Queue.new
      spin { server.accept_loop { |c| got << c } }
      TCPSocket.new('127.0.0.1', server.local_address.ip_port)
      expect(got.shift).to be_a(TCPSocket)
    end

    it 'socket helpers set their options and return self' do
      s = Socket.new(:INET, :STREAM)
      expect(s.reuse_addr).to equal(s)
      expect(s.reuse_port).to equal(s)
      expect(s.no_delay).to equal(s)
      expect(s.dont_linger).to equal(s)
      expect(s.getsockopt(:SOCKET, :REUSEADDR).bool).to be(true)
      expect(s.getsockopt(:SOCKET, :REUSEPORT).bool).to be(true)
      expect(s.getsockopt(:TCP, :NODELAY).bool).to be(true)
      expect(s.getsockopt(:SOCKET, :LINGER).linger).to eq([false, 0])
      s.close
    end
  end

  describe 'UNIXSocket / UNIXServer' do
    it 'accepts UNIXSockets and read/write_nonblock behave as stock Ruby (differences.md: UNIX nonblock)' do
      Dir.mktmpdir do |dir|
        path = File.join(dir, 'sock')
        server = UNIXServer.new(path)
        accepted = spin { server.accept }
        client = UNIXSocket.new(path)
        conn = accepted.await
        expect(conn).to be_a(UNIXSocket)
        expect(conn.read_nonblock(10, exception: false)).to eq(:wait_readable)
        expect(client.write_nonblock('nb')).to eq(2)
        expect(conn.read_nonblock(10)).to eq('nb')
        client.send('sent', 0)
        expect(conn.recv(10)).to eq('sent')
        [client, conn, server].each(&:close)
      end
    end

    # stdlib's socket.rb has a read_nonblock of its own, which skipped the
    # bytes `gets` had buffered (they were lost).
    %i[read_nonblock recv_nonblock].each do |meth|
      it "#{meth} returns what gets buffered first" do
        a, b = UNIXSocket.pair
        b.write("line1\nrest")
        expect(a.gets).to eq("line1\n")
        b.write('more')
        sleep 0.01
        expect(a.__send__(meth, 99)).to eq('rest')
        expect(a.__send__(meth, 99)).to eq('more')
        expect(a.__send__(meth, 99, exception: false)).to eq(:wait_readable)
      ensure
        a&.close
        b&.close
      end
    end

    it 'accept_loop serves several clients' do
      Dir.mktmpdir do |dir|
        path = File.join(dir, 'sock')
        server = UNIXServer.new(path)
        spin do
          server.accept_loop do |c|
            spin do
              c.puts(c.gets.upcase)
              c.close
            end
          end
        end
        replies = Array.new(5) do |i|
          spin do
            s = UNIXSocket.new(path)
            s.puts("c#{i}")
            s.gets
          end
        end
        expect(Fiber.await(*replies)).to eq(Array.new(5) { |i| "C#{i}\n" })
      end
    end
  end

  describe 'UDPSocket' do
    it 'recvfrom waits for a datagram without blocking other fibers' do
      a = UDPSocket.new
      a.bind('127.0.0.1', 0)
      b = UDPSocket.new
      spin do
        sleep 0.1
        b.send('dgram', 0, '127.0.0.1', a.addr[1])
      end
      (data, addr), ticks = with_ticker { a.recvfrom(100) }
      expect(data).to eq('dgram')
      expect(addr[0]).to eq('AF_INET')
      expect(ticks).to be >= 3
    end
  end

  describe 'Polyphony::Net' do
    it 'tcp_listen returns a listening TCPServer; tcp_connect a connected TCPSocket' do
      server = Polyphony::Net.tcp_listen('127.0.0.1', 0, reuse_port: true, backlog: 64)
      expect(server).to be_a(TCPServer)
      port = server.addr[1]
      spin do
        server.accept_loop do |c|
          c.puts('welcome')
          c.close
        end
      end
      s = Polyphony::Net.tcp_connect('127.0.0.1', port)
      expect(s).to be_a(TCPSocket)
      expect(s.gets).to eq("welcome\n")
    end

    it 'tcp_listen without a port raises' do
      expect { Polyphony::Net.tcp_listen('127.0.0.1') }.to raise_error(RuntimeError, 'Port number not specified')
    end
  end

  it 'an echo round trip stays correct under GC.stress' do
    server = echo_server
    s = TCPSocket.new('127.0.0.1', server.addr[1])
    GC.stress = true
    begin
      replies = Array.new(5) do |i|
        s << "gc #{i}\n"
        s.gets
      end
    ensure
      GC.stress = false
    end
    expect(replies).to eq(Array.new(5) { |i| "gc #{i}\n" })
  end
end

RSpec.describe 'Datagram sockets (stdlib forms)' do
  it 'UDPSocket#recvfrom, #recvmsg, #send and #sendmsg answer as stdlib, parking only the fiber' do
    server = UDPSocket.new
    server.bind('127.0.0.1', 0)
    port = server.local_address.ip_port
    client = UDPSocket.new
    ticks = 0
    ticker = spin { loop { ticks += 1; snooze } }
    receiver = spin { server.recvfrom(100) }
    snooze
    expect(client.send('to addr', 0, '127.0.0.1', port)).to eq(7)
    data, addr = receiver.await
    expect(data).to eq('to addr')
    expect(addr).to eq(['AF_INET', client.local_address.ip_port, '127.0.0.1', '127.0.0.1'])
    client.connect('127.0.0.1', port)
    receiver = spin { server.recvmsg(100) }
    snooze
    expect(client.sendmsg('by msg')).to eq(6)
    msg, from, flags = receiver.await
    expect([msg, from.class, from.ip_port,
            flags.class]).to eq(['by msg', Addrinfo, client.local_address.ip_port, Integer])
    expect(ticks).to be > 0
    ticker.stop
  ensure
    [server, client].each { |s| s&.close }
  end

  it 'Socket#recvmsg on a datagram socket gives [data, Addrinfo, flags]' do
    sock = Socket.new(:INET, :DGRAM)
    sock.bind(Addrinfo.udp('127.0.0.1', 0))
    receiver = spin { sock.recvmsg(50) }
    snooze
    UDPSocket.new.tap { |c| c.send('dgram', 0, '127.0.0.1', sock.local_address.ip_port) }.close
    data, from, = receiver.await
    expect([data, from.class]).to eq(['dgram', Addrinfo])
  ensure
    sock&.close
  end
end
