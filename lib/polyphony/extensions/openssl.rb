# frozen_string_literal: true

require 'openssl'

# Fiber-aware TLS. OpenSSL's own `Buffering` layer (`read`,
# `gets`, `readpartial`, `write`, `puts` …) sits on `sysread`/`syswrite`, so
# making those, the handshake and `accept` wait on the underlying socket with
# the backend makes every method fiber-aware. Stdlib semantics are kept
# (`sysread` raises `EOFError` at EOF).
class OpenSSL::SSL::SSLSocket
  alias orig_connect connect unless method_defined?(:orig_connect)
  alias orig_accept accept unless method_defined?(:orig_accept)
  alias orig_sysread sysread unless method_defined?(:orig_sysread)
  alias orig_syswrite syswrite unless method_defined?(:orig_syswrite)

  # Client handshake; parks the fiber while OpenSSL waits for the peer.
  def connect
    __ssl_loop__ { connect_nonblock(exception: false) }
  end

  # Server handshake.
  def accept
    __ssl_loop__ { accept_nonblock(exception: false) }
  end

  # At most `maxlen` bytes; `EOFError` at EOF.
  def sysread(maxlen, buf = nil)
    r = __ssl_loop__ { __send__(:sysread_nonblock, maxlen, buf, exception: false) }
    raise EOFError, 'end of file reached' if r.nil?

    r
  end

  def syswrite(data)
    __ssl_loop__ { __send__(:syswrite_nonblock, data, exception: false) }
  end

  # Yields each chunk read until EOF.
  def read_loop(maxlen = 8192)
    loop { yield readpartial(maxlen) }
  rescue EOFError
    self
  end
  alias recv_loop read_loop

  def __read_method__
    :readpartial
  end

  %i[dont_linger no_delay reuse_addr].each do |m|
    define_method(m) do
      to_io.__send__(m)
      self
    end
  end

  private

  def __ssl_loop__
    loop do
      case (r = yield)
      when :wait_readable then to_io.wait_readable
      when :wait_writable then to_io.wait_writable
      else return r
      end
    end
  end
end

# `SSLServer#accept` is fiber-aware through the patched `TCPServer#accept` and
# `SSLSocket#accept`; `accept_loop` is added.
class OpenSSL::SSL::SSLServer
  # The server's SSLContext (the one it was made with).
  attr_reader :ctx

  # Accepts connections forever, yielding each one after its handshake.
  # Handshake and connection errors (`OpenSSL::SSL::SSLError`,
  # `SystemCallError`, `EOFError`) are skipped unless `ignore_errors: false`.
  def accept_loop(ignore_errors: true)
    loop do
      yield accept
    rescue OpenSSL::SSL::SSLError, SystemCallError, EOFError
      raise unless ignore_errors
    end
  end
end
