# frozen_string_literal: true

require 'socket'

# Fiber-aware sockets. They are the standard library's own socket
# classes (docs/differences.md, **real sockets**: `TCPSocket.new` returns a real `TCPSocket`, with
# `fileno`, `peeraddr`, `setsockopt` …); only the calls that wait are
# replaced, and each parks just the calling fiber.
class ::BasicSocket
  alias orig_recv recv unless method_defined?(:orig_recv)
  alias orig_send send unless method_defined?(:orig_send)
  alias orig_close_read close_read unless method_defined?(:orig_close_read)

  # Bytes kept for this socket by interrupted reads die with its read side
  # (docs/io-semantics.md).
  def close_read
    __send__(:__discard_kept__)
    orig_close_read
  end

  alias orig_recv_nonblock recv_nonblock unless method_defined?(:orig_recv_nonblock)

  # stdlib's socket.rb gives sockets a `read_nonblock` of their own (one
  # `recv(MSG_DONTWAIT)`), which skipped what `gets` & co. buffered and what
  # an interrupted read kept: the bytes after them came first. Those are
  # served first, as by IO's (extensions/io.rb).
  if private_method_defined?(:__read_nonblock)
    def read_nonblock(maxlen, buf = nil, opts = nil, exception: true)
      exception = opts.fetch(:exception, exception) if opts.is_a?(Hash)
      maxlen = __check_length__(maxlen)
      __take_pending__(maxlen, buf) || __read_nonblock(maxlen, buf, exception)
    end
  elsif instance_method(:read_nonblock).owner == self
    remove_method(:read_nonblock)
  end

  # Stock `recv_nonblock`, except that with no flags the bytes `gets` & co.
  # buffered, then what an interrupted read kept (docs/io-semantics.md),
  # come first.
  def recv_nonblock(maxlen, flags = 0, buf = nil, exception: true)
    if flags.nil? || flags.equal?(0)
      pending = __take_pending__(__check_length__(maxlen), buf)
      return pending if pending
    end
    orig_recv_nonblock(maxlen, flags, buf, exception: exception)
  end

  def __read_method__
    :backend_recv
  end

  def __write_method__
    :backend_send
  end

  # One `recv(2)` of at most `maxlen` bytes; `nil` at EOF (as Ruby ≥ 3.3).
  # Flags other than 0 (e.g. `MSG_PEEK`) are honoured.
  def recv(maxlen, flags = 0, outbuf = nil)
    maxlen = __check_length__(maxlen)
    flags = Integer(flags || 0)
    if flags.zero?
      return __deliver__(__take_bytes__(maxlen), outbuf, 0) if __buffered?

      return Polyphony.backend_recv(self, outbuf, maxlen, 0) || __empty_buffer__(outbuf, 0)
    end
    __nonblock_loop__ { recv_nonblock(maxlen, flags, outbuf, exception: false) }
  end

  # Yields each chunk received (new Strings) until EOF.
  def recv_loop(maxlen = 8192, &)
    data = __take_read_buffer__
    yield data if data && !data.empty?
    Polyphony.backend_recv_loop(self, maxlen, &)
  end
  alias read_loop recv_loop

  def feed_loop(receiver, method = :call, &)
    data = __take_read_buffer__
    receiver.__send__(method, data, &) if data && !data.empty?
    Polyphony.backend_recv_feed_loop(self, receiver, method, &)
  end

  # Sends all of `msg`; returns its byte count. With a destination address
  # (datagram sockets) one `sendto`.
  def send(msg, flags = 0, *dest)
    return Polyphony.backend_send(self, String(msg), Integer(flags || 0)) if dest.empty?

    orig_send(msg, flags, *dest)
  end

  def recvmsg(*args, **opts)
    __nonblock_loop__ { recvmsg_nonblock(*args, **opts, exception: false) }
  end

  def sendmsg(*args)
    __nonblock_loop__ { sendmsg_nonblock(*args, exception: false) }
  end

  # `SO_LINGER` {off, 0} (`Socket::ZERO_LINGER`), as in Polyphony: close
  # returns at once and the kernel sends what is left in the background (no
  # waiting in close, and no reset).
  def dont_linger
    setsockopt(::Socket::SOL_SOCKET, ::Socket::SO_LINGER, ::Socket::ZERO_LINGER)
    self
  end

  def no_delay
    setsockopt(::Socket::IPPROTO_TCP, ::Socket::TCP_NODELAY, 1)
    self
  end

  def reuse_addr
    setsockopt(::Socket::SOL_SOCKET, ::Socket::SO_REUSEADDR, 1)
    self
  end

  def reuse_port
    setsockopt(::Socket::SOL_SOCKET, ::Socket::SO_REUSEPORT, 1)
    self
  end

  private

  # Runs a `*_nonblock(exception: false)` call until it stops saying
  # `:wait_readable`/`:wait_writable`, waiting for readiness in between.
  def __nonblock_loop__
    loop do
      r = yield
      case r
      when :wait_readable then Polyphony.backend_wait_io(self, false)
      when :wait_writable then Polyphony.backend_wait_io(self, true)
      else return r
      end
    end
  end
end

# `Socket`: stdlib `accept`/`connect`/`recvfrom`, fiber-aware, plus `accept_loop`.
class ::Socket
  ZERO_LINGER = [0, 0].pack('ii') unless const_defined?(:ZERO_LINGER)

  alias orig_accept accept unless method_defined?(:orig_accept)
  alias orig_connect connect unless method_defined?(:orig_connect)

  # Stdlib semantics, fiber-aware: `[socket, addrinfo]`.
  def accept
    __nonblock_loop__ { accept_nonblock(exception: false) }
  end

  # Accepts forever, yielding each connection as a `TCPSocket` (or
  # `UNIXSocket` for a Unix-domain socket). Ends with `break` or an
  # exception.
  def accept_loop(&)
    Polyphony.backend_accept_loop(self, __connection_class__, &)
  end

  # Connects to `addr` (an `Addrinfo` or a packed sockaddr) without blocking
  # the thread; `0` as stdlib.
  def connect(addr)
    addr = addr.to_sockaddr if addr.respond_to?(:to_sockaddr)
    Polyphony.backend_connect_addr(self, addr)
    0
  end

  # `[data, addrinfo]` of one datagram or read.
  def recvfrom(maxlen, flags = 0)
    __nonblock_loop__ { recvfrom_nonblock(maxlen, flags, exception: false) }
  end

  private

  def __connection_class__
    local_address.afamily == ::Socket::AF_UNIX ? ::UNIXSocket : ::TCPSocket
  end
end

# `TCPSocket.new` connects without blocking the thread and returns a real
# socket (docs/differences.md, **real sockets**).
class ::TCPSocket
  # A connected socket: resolves `host` (blocking the thread only for
  # DNS, as stdlib), then connects without blocking the thread, trying each
  # address in turn. `connect_timeout:` raises `Errno::ETIMEDOUT`.
  # rubocop:disable Metrics/ParameterLists -- the stdlib signature
  def initialize(host, port, local_host = nil, local_port = nil, connect_timeout: nil, resolv_timeout: nil)
    _ = resolv_timeout
    fd = __connect_fd__(host, port, local_host, local_port, connect_timeout)
    ::IO.instance_method(:initialize).bind_call(self, fd, 'r+', autoclose: true)
    binmode
    self.sync = true
    self.do_not_reverse_lookup = ::BasicSocket.do_not_reverse_lookup
  end
  # rubocop:enable Metrics/ParameterLists

  # `self`: this is a real socket (Polyphony's wrappers answered their inner
  # socket here).
  def io
    self
  end

  private

  def __connect_fd__(host, port, local_host, local_port, timeout)
    error = nil
    ::Addrinfo.getaddrinfo(host, port, nil, :STREAM).each do |ai|
      return __connect_one__(ai, local_host, local_port, timeout)
    rescue SystemCallError => e
      error = e
    end
    raise error || SocketError.new("no address for #{host}")
  end

  # The fd of a new socket connected to `ai`; the socket is closed if that
  # fails.
  def __connect_one__(addrinfo, local_host, local_port, timeout)
    sock = ::Socket.new(addrinfo.afamily, ::Socket::SOCK_STREAM, 0)
    begin
      if local_host || local_port
        sock.bind(::Addrinfo.getaddrinfo(local_host, local_port, addrinfo.afamily, :STREAM).first)
      end
      timeout ? __connect_within__(sock, addrinfo, timeout) : sock.connect(addrinfo)
      sock.autoclose = false
      sock.fileno
    rescue Exception # rubocop:disable Lint/RescueException
      sock.close
      raise
    end
  end

  def __connect_within__(sock, addrinfo, timeout)
    cancel_after(timeout, with_exception: [Errno::ETIMEDOUT, 'user specified timeout']) { sock.connect(addrinfo) }
  end
end

# Servers hand out real `TCPSocket`s, accepted without blocking the thread.
class ::TCPServer
  alias orig_accept accept unless method_defined?(:orig_accept)

  # The next connection, as a `TCPSocket`.
  def accept
    Polyphony.backend_accept(self, ::TCPSocket)
  end

  # Accepts forever, yielding each connection (`break` or an exception ends
  # it).
  def accept_loop(&)
    Polyphony.backend_accept_loop(self, ::TCPSocket, &)
  end
end

# Unix-domain servers hand out `UNIXSocket`s without blocking the thread.
class ::UNIXServer
  alias orig_accept accept unless method_defined?(:orig_accept)

  def accept
    Polyphony.backend_accept(self, ::UNIXSocket)
  end

  def accept_loop(&)
    Polyphony.backend_accept_loop(self, ::UNIXSocket, &)
  end
end

# `UDPSocket#recvfrom` waits for a datagram without blocking the thread.
class ::UDPSocket
  # `[data, [family, port, host, ip]]` of the next datagram.
  def recvfrom(maxlen, flags = 0)
    __nonblock_loop__ { recvfrom_nonblock(maxlen, flags, exception: false) }
  end
end
