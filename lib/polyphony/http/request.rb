# frozen_string_literal: true

require 'uri'

module Polyphony
  module HTTP
    # A request as the handler sees it: its head (complete when the handler
    # runs), its body (read only when the handler asks) and its response.
    class Request
      CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n"
      EMPTY_HEADERS = {}.freeze
      # Flags of `HTTP.__response__` (ext/polyphony/src/ruby_api/http.rs).
      CLOSE = 1
      KEEP_ALIVE = 2
      CHUNKED = 4
      OMIT_BODY = 8
      LAST_CHUNK = "0\r\n\r\n"
      EMPTY = ''

      attr_reader :connection

      # `head`: what `HTTP.__parse_head__` returned; `body`: the body's
      # length, 0 for none, -1 for chunked.
      #
      # The native connection loop (ext/polyphony/src/ruby_api/
      # http_connection.rs) makes the requests without a body itself, with
      # as few variables as it can (an unset one is nil): @connection,
      # @close (only if the client does not keep the connection) and @head,
      # the head's bytes, from which the request line's parts (@method,
      # @protocol, @path, @query_string: `__line__`, native) and @headers
      # are made when asked.
      def initialize(conn, head, body)
        @connection = conn
        @method, @path, @query_string, @protocol, @headers = head
        @close = true unless head[7] # the client ends the connection
        # @sent: nil, :head (streaming) or :done
        return if body.zero?

        @has_body = true
        @body_open = true # until the body's end is read
        @chunked_body = body.negative?
        @left = body
      end

      # The headers (lower-case names; repeated headers joined with ", ").
      def headers
        @headers ||= HTTP.__parse_headers__(@head)
      end

      # "GET", "POST"... (frozen).
      def method
        __line__ unless @method
        @method
      end

      # "HTTP/1.1" or "HTTP/1.0" (frozen).
      def protocol
        __line__ unless @method
        @protocol
      end

      # The target up to `?`.
      def path
        __line__ unless @method
        @path
      end

      # The query string (nil if none).
      def query_string
        __line__ unless @method
        @query_string
      end

      # The query parameters, a Hash (parsed on first use; a repeated key
      # keeps its last value).
      def query
        @query ||= parse_query(query_string)
      end

      def remote_addr = @connection.remote_addr

      def scheme = @connection.scheme

      def host = headers['host']

      # Whether the connection stays open after this request (HTTP/1.1
      # unless `Connection: close`; HTTP/1.0 only with `keep-alive`; not
      # after a response that ends it).
      def keep_alive? = !@close

      # ---- body -----------------------------------------------------------

      # The whole (remaining) body, or nil when there is none.
      def read
        return nil unless @has_body

        out = +''
        while (chunk = next_chunk)
          out << chunk
        end
        out
      end

      # The next piece of the body as it arrives, nil at its end. Sends
      # `100 Continue` first when the client asked for it.
      def next_chunk = next_piece(Connection::READ_SIZE, nil)

      def each_chunk
        while (chunk = next_chunk)
          yield chunk
        end
      end

      # IO-style: up to `maxlen` bytes of the body, into `buf` (its contents
      # replaced) when given; EOFError at the end of the body. With a
      # Content-Length body the bytes go from the socket straight into
      # `buf`, so `IO.copy_stream(req, io)`, which passes the same buffer
      # each time, copies an upload with no String per piece.
      def readpartial(maxlen, buf = nil)
        maxlen = Integer(maxlen)
        raise ArgumentError, "negative length #{maxlen} given" if maxlen.negative?

        piece = maxlen.zero? ? '' : next_piece(maxlen, buf)
        unless piece
          buf&.clear
          raise EOFError, 'end of request body'
        end
        return piece if buf.nil? || piece.equal?(buf)

        buf.replace(piece)
      end

      def complete? = !@body_open

      # Reads and drops what is left of the body, up to `max` bytes: true if
      # the body ended (the connection can serve the next request).
      def drain_body(max)
        return true unless @body_open
        # A client that waits for 100 Continue sends no body unless asked.
        return false if expects_continue? && !@continued

        seen = 0
        while (chunk = next_chunk)
          seen += chunk.bytesize
          return false if seen > max
        end
        true
      end

      # ---- response -------------------------------------------------------

      def headers_sent? = !@sent.nil?

      # Sends a whole response: `body` (a String or nil) with `headers`
      # (`':status' => n` sets the status, 200 by default), in one write.
      # (`__respond__` is native: ext/polyphony/src/ruby_api/
      # http_request.rs. A Ruby method in front: Ruby passes a C method a
      # copy of brace-less `'Name' => value` arguments, a Ruby one the
      # Hash itself.)
      def respond(body, headers = EMPTY_HEADERS) = __respond__(body, headers)

      # Starts a streamed response: chunked (HTTP/1.1) unless `headers` set
      # a Content-Length; HTTP/1.0 clients get a body that ends with the
      # connection.
      def send_headers(headers = EMPTY_HEADERS, status = nil)
        raise Error, 'response already sent' if @sent

        status ||= headers[':status'] || 200
        flags = 0
        @chunked = false
        unless header?(headers, 'content-length') || method == 'HEAD'
          if protocol == 'HTTP/1.0'
            @close = true
          else
            @chunked = true
            flags = CHUNKED
          end
        end
        @connection.write(HTTP.__response__(status, headers, nil, flags | __connection_flags__))
        @sent = :head
        self
      end

      # Sends a piece of a streamed response (headers first if not sent);
      # `done: true` ends it.
      def send_chunk(data, done: false)
        send_headers unless @sent
        raise Error, 'response already finished' if @sent == :done

        write_piece(data.to_s, done) unless method == 'HEAD'
        @sent = :done if done
        self
      end
      alias << send_chunk

      # Ends the response: a streamed one gets its last chunk; none at all
      # gets `204 No Content`.
      def finish
        case @sent
        when nil then respond(nil, ':status' => 204)
        when :head then send_chunk(EMPTY, done: true)
        end
        self
      end

      def redirect(url, status = 302)
        respond(nil, ':status' => status, 'Location' => url)
      end

      # Sends `io` (a File or any IO) as the body: with its size as the
      # Content-Length when known. Plain sockets get the bytes spliced
      # kernel-side (no copy through Ruby strings).
      def serve_io(io, headers = {})
        size = io.respond_to?(:size) ? io.size : nil
        headers = headers.merge('Content-Length' => size.to_s) if size && !header?(headers, 'content-length')
        send_headers(headers)
        copy_body(io) unless method == 'HEAD'
        finish
      end

      # Serves the file at `path` (404 if it does not exist).
      def serve_file(path, headers = {})
        File.open(path, 'rb') { |f| serve_io(f, headers) }
      rescue Errno::ENOENT, Errno::EISDIR, Errno::EACCES
        respond("Not found\n", ':status' => 404)
      end

      # Writes the response head (no body framing, `Connection: close`) and
      # hands the socket over: the caller writes the body and closes it
      # (Rack's response hijack).
      def hijack_after_head(headers)
        raise Error, 'response already sent' if @sent

        status = headers[':status'] || 200
        headers = headers.reject do |k, _|
          k.is_a?(String) && (k.casecmp?('connection') || k.casecmp?('content-length'))
        end
        @connection.write(HTTP.__response__(status, headers, nil, CLOSE))
        @sent = :done
        @close = true
        @connection.hijack
      end

      # An error response after a handler failure; the connection closes.
      def fail(status)
        @close = true
        @connection.reject(status)
        @sent = :done
      end

      private

      # The bytes of `io` as the body of a response whose head is out.
      def copy_body(io)
        if !@chunked && @connection.socket.is_a?(::BasicSocket)
          IO.double_splice(io, @connection.socket)
        else
          buf = +''
          send_chunk(buf) while io.read(65_536, buf)
        end
      end

      def write_piece(data, done)
        if !@chunked
          @connection.write(data) unless data.empty?
        elsif data.empty?
          @connection.write(LAST_CHUNK) if done
        else
          @connection.write("#{data.bytesize.to_s(16)}\r\n", data, done ? "\r\n#{LAST_CHUNK}" : "\r\n")
        end
      end

      def header?(headers, name)
        headers.each_key { |k| return true if k.is_a?(String) && k.casecmp?(name) }
        false
      end

      def expects_continue? = headers['expect']&.casecmp?('100-continue')

      def continue_if_expected
        return if @continued || !expects_continue? || protocol == 'HTTP/1.0'

        @continued = true
        @connection.write(CONTINUE)
      end

      # The next piece of the body, at most `max` bytes (into `buf` when the
      # connection can read straight into it), or nil at the end.
      def next_piece(max, buf)
        return nil unless @body_open

        continue_if_expected
        return next_chunked_piece(max) if @chunked_body

        piece = @connection.read_body_into([@left, max].min, buf)
        @left -= piece.bytesize
        @body_open = false if @left.zero?
        piece
      end

      def next_chunked_piece(max)
        loop do
          if @chunk_left.nil? || @chunk_left.zero?
            @connection.expect_bytes("\r\n") if @chunk_left # after a chunk's data
            size_line = @connection.read_line
            hex = size_line.split(';', 2).first.strip
            raise ConnectionError.new(400, 'bad chunk size') unless hex.match?(/\A\h{1,15}\z/)

            @chunk_left = hex.to_i(16)
            if @chunk_left.zero?
              skip_trailers
              @body_open = false
              return nil
            end
            check_body_limit(@chunk_left)
          end
          chunk = @connection.read_body_bytes([@chunk_left, max].min)
          @chunk_left -= chunk.bytesize
          return chunk unless chunk.empty?
        end
      end

      def check_body_limit(more)
        limit = @connection.server.options[:max_body]
        return unless limit

        @body_seen = (@body_seen || 0) + more
        raise ConnectionError.new(413, 'body too large') if @body_seen > limit
      end

      def skip_trailers
        count = 0
        until @connection.read_line.empty?
          count += 1
          raise ConnectionError.new(431, 'too many trailers') if count > 100
        end
      end

      def parse_query(str)
        return {} unless str && !str.empty?

        str.split('&').each_with_object({}) do |pair, h|
          next if pair.empty?

          k, v = pair.split('=', 2)
          h[decode(k)] = v ? decode(v) : nil
        end
      end

      def decode(str)
        URI.decode_www_form_component(str)
      rescue ArgumentError
        str
      end

      # Ruby 3.1 numbers a class's instance variables in the order they are
      # first set on any of its objects, and keeps an object's first three
      # inside it (more take a separate allocation): make them the three a
      # request the native loop makes has when the handler only responds.
      allocate.instance_eval do
        @connection = nil
        @head = nil
        @sent = nil
      end
    end
  end
end
