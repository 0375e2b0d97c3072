# frozen_string_literal: true

module Polyphony
  module HTTP
    # A client went away, or sent something the server cannot answer: the
    # connection ends (with `status` sent first when it is an Integer and no
    # response has started).
    class ConnectionError < StandardError
      attr_reader :status

      def initialize(status = nil, msg = nil)
        @status = status
        super(msg || (status ? "HTTP #{status}" : 'connection closed'))
      end
    end

    # One HTTP/1.x connection, served by one fiber: reads each request head
    # (the handler runs once all headers are in), hands the handler a
    # `Request` whose body is read only when the handler asks, writes its
    # response, and keeps the connection alive per HTTP/1.0 and 1.1 rules.
    # Requests are handled in order; pipelined bytes wait in the buffer.
    class Connection
      STATUS_REASONS = {
        100 => 'Continue', 101 => 'Switching Protocols', 200 => 'OK', 201 => 'Created',
        202 => 'Accepted', 204 => 'No Content', 206 => 'Partial Content',
        301 => 'Moved Permanently', 302 => 'Found', 303 => 'See Other', 304 => 'Not Modified',
        307 => 'Temporary Redirect', 308 => 'Permanent Redirect', 400 => 'Bad Request',
        401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found', 405 => 'Method Not Allowed',
        408 => 'Request Timeout', 411 => 'Length Required', 413 => 'Content Too Large',
        414 => 'URI Too Long', 417 => 'Expectation Failed', 422 => 'Unprocessable Content',
        426 => 'Upgrade Required', 429 => 'Too Many Requests',
        431 => 'Request Header Fields Too Large', 500 => 'Internal Server Error',
        501 => 'Not Implemented', 502 => 'Bad Gateway', 503 => 'Service Unavailable',
        505 => 'HTTP Version Not Supported'
      }.freeze
      STATUS_LINES = Hash.new do |h, status|
        h[status] = "HTTP/1.1 #{status} #{STATUS_REASONS[status] || 'Unknown'}\r\n".b.freeze
      end
      STATUS_REASONS.each_key { |s| STATUS_LINES[s] }
      CRLF = "\r\n"
      READ_SIZE = 65_536
      # Unread request body bytes drained to keep a connection alive; more
      # and the connection closes instead.
      MAX_DRAIN = 1 << 20
      # Errors that mean the peer is gone: the connection ends quietly.
      GONE = [IOError, SystemCallError, OpenSSL::SSL::SSLError, ConnectionError].freeze

      attr_reader :socket, :server, :remote_addr, :scheme

      def initialize(server, socket, opts, remote_addr, scheme)
        @server = server
        @socket = socket
        @opts = opts
        @remote_addr = remote_addr
        @scheme = scheme
        @buf = String.new(capacity: READ_SIZE, encoding: Encoding::BINARY)
        @idle = true
        @hijacked = false
      end

      # Whether the connection waits between requests (graceful stop ends
      # such connections at once).
      def idle? = @idle

      # Serves requests until the client or the server ends the connection.
      def run(&handler)
        first = true
        loop do
          req = read_request(first)
          break unless req

          first = false
          @idle = false
          keep = serve(req, &handler)
          @idle = true
          break if !keep || @server.stopping?
        end
      rescue *GONE => e
        reject(e.status) if e.is_a?(ConnectionError) && e.status && !@req&.headers_sent?
      ensure
        close unless @hijacked
      end

      # Takes the connection over: the server no longer reads, writes or
      # closes it (Rack full hijack, protocol upgrades).
      def hijack
        @hijacked = true
        @socket
      end

      def hijacked? = @hijacked

      # ---- reading ------------------------------------------------------

      # The next request, or nil when the client closed the connection
      # cleanly between requests (or stayed idle past the keep-alive
      # timeout).
      def read_request(first)
        head = parse_buffered
        return build_request(head) if head

        wait = first ? @opts[:head_timeout] : @opts[:keep_alive_timeout]
        return nil unless fill(wait, eof_ok: true)

        deadline = now + @opts[:head_timeout]
        until (head = parse_buffered)
          left = deadline - now
          raise ConnectionError.new(408, 'request head timeout') if left <= 0

          fill(left, eof_ok: false) or raise ConnectionError
        end
        build_request(head)
      end

      # Reads more bytes into the buffer, waiting at most `timeout` seconds.
      # False at a clean EOF when `eof_ok`; nil on an idle timeout.
      def fill(timeout, eof_ok:)
        got = read_with_timeout(timeout)
        if got.nil?
          return false if eof_ok && @buf.empty?

          raise ConnectionError
        end
        got
      end

      TIMED_OUT = Object.new.freeze
      private_constant :TIMED_OUT

      # Appends what one read gets to the buffer: true; nil at EOF, or on a
      # timeout while idle between requests. A timeout mid-request raises
      # (408 when part of a head is in).
      def read_with_timeout(timeout)
        @tmp ||= String.new(capacity: READ_SIZE, encoding: Encoding::BINARY)
        r = if timeout
              Thread.current.backend.timeout(timeout, nil, TIMED_OUT) { @socket.readpartial(READ_SIZE, @tmp) }
            else
              @socket.readpartial(READ_SIZE, @tmp)
            end
        if r.equal?(TIMED_OUT)
          return nil if @buf.empty? && @idle

          raise ConnectionError.new(@buf.empty? || !@idle ? nil : 408, 'read timeout')
        end
        @buf << r
        true
      rescue EOFError
        nil
      end

      def parse_buffered
        return nil if @buf.empty?

        head = Polyphony::HTTP.__parse_head__(@buf, @opts[:max_line], @opts[:max_headers])
        case head
        when nil
          raise ConnectionError.new(431, 'request head too large') if @buf.bytesize > @opts[:max_head]

          nil
        when Integer then raise ConnectionError.new(head)
        else
          raise ConnectionError.new(431, 'request head too large') if head[5] > @opts[:max_head]

          head
        end
      end

      def build_request(head)
        method, path, query, version, headers, len = head
        @buf = @buf.byteslice(len, @buf.bytesize - len)
        @req = nil
        @req = Request.new(self, method, path, query, version, headers, body_framing(method, headers))
      end

      # :none, [:length, n] or :chunked; rejects what smuggling relies on.
      def body_framing(_method, headers)
        te = headers['transfer-encoding']
        cl = headers['content-length']
        if te
          raise ConnectionError.new(400, 'both Content-Length and Transfer-Encoding') if cl
          raise ConnectionError.new(501, 'unsupported transfer coding') unless te.casecmp?('chunked')

          return :chunked
        end
        return :none unless cl
        raise ConnectionError.new(400, 'bad Content-Length') unless cl.match?(/\A\d{1,18}\z/)

        n = cl.to_i
        limit = @opts[:max_body]
        raise ConnectionError.new(413, 'body too large') if limit && n > limit

        n.zero? ? :none : [:length, n]
      end

      # Up to `max` body bytes from the buffer, else from the socket (one
      # read); nil at EOF. Waits at most the body timeout.
      def read_body_bytes(max)
        if @buf.empty?
          got = read_with_timeout(@opts[:body_timeout])
          raise ConnectionError.new(nil, 'client went away mid-body') unless got
        end
        take = [max, @buf.bytesize].min
        chunk = @buf.byteslice(0, take)
        @buf = @buf.byteslice(take, @buf.bytesize - take)
        chunk
      end

      # A line of a chunked body (size line or trailer), without its CRLF.
      def read_line(limit = 4096)
        until (i = @buf.index("\n"))
          raise ConnectionError.new(400, 'chunk line too long') if @buf.bytesize > limit

          read_with_timeout(@opts[:body_timeout]) or raise ConnectionError
        end
        line = @buf.byteslice(0, i).chomp("\r")
        @buf = @buf.byteslice(i + 1, @buf.bytesize - i - 1)
        line
      end

      # Exactly `n` bytes (the CRLF after a chunk's data, say).
      def expect_bytes(bytes)
        read_with_timeout(@opts[:body_timeout]) or raise ConnectionError while @buf.bytesize < bytes.bytesize
        raise ConnectionError.new(400, 'bad chunk encoding') unless @buf.start_with?(bytes)

        @buf = @buf.byteslice(bytes.bytesize, @buf.bytesize - bytes.bytesize)
      end

      # ---- writing ------------------------------------------------------

      def write(*strings)
        @socket.write(*strings)
      end

      # The response head for `status` and `headers` (a Hash; Array values
      # give one header line each; pseudo-headers such as `:status` skipped).
      def head_for(status, headers, extra = nil)
        out = STATUS_LINES[status].dup
        headers.each do |k, v|
          next if k.is_a?(Symbol) || k.start_with?(':')

          if v.is_a?(Array)
            v.each { |e| out << k << ': ' << e.to_s << CRLF }
          else
            out << k.to_s << ': ' << v.to_s << CRLF
          end
        end
        out << extra if extra
        out << CRLF
      end

      # An error response to a request that could not be served; the
      # connection closes after it.
      def reject(status)
        body = "#{STATUS_REASONS[status] || 'Error'}\n"
        write("#{STATUS_LINES[status]}Content-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\n" \
              "Connection: close\r\n\r\n#{body}")
      rescue *GONE
        nil
      end

      def close
        @socket.close unless @socket.closed?
      rescue *GONE
        nil
      end

      private

      def serve(req, &handler)
        begin
          handler.call(req)
        rescue *GONE
          raise
        rescue StandardError => e
          @server.log_error(e, req)
          req.fail(500) unless req.headers_sent?
          return false
        end
        return false if @hijacked

        req.finish
        req.keep_alive? && req.drain_body(MAX_DRAIN)
      end

      def now = ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
    end
  end
end
