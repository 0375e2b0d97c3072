# frozen_string_literal: true

require 'stringio'
require 'tempfile'

module Polyphony
  module HTTP
    # Serves a Rack application (Rack 2.2 and 3): builds the env from a
    # `Request`, writes the app's response. `rack.input` streams the body
    # from the socket as the app reads it; full and partial hijack,
    # streaming bodies (`each`), file bodies (`to_path`, spliced) and
    # `rack.after_reply` are supported.
    class RackAdapter
      SERVER_SOFTWARE = "polyphony-http #{Polyphony::VERSION}".freeze
      RACK_VERSION = [1, 3].freeze
      # Env keys of the header names seen so far; bounded, since clients
      # choose the names.
      @env_keys = { 'content-type' => 'CONTENT_TYPE', 'content-length' => 'CONTENT_LENGTH' }
      ENV_KEYS_MAX = 512

      # The env key of a (lower-case) header name.
      def self.env_key(name)
        @env_keys[name] || begin
          key = "HTTP_#{name.upcase.tr('-', '_')}".freeze
          @env_keys[name] = key if @env_keys.size < ENV_KEYS_MAX
          key
        end
      end

      def initialize(app, multiprocess: false)
        @app = app
        @multiprocess = multiprocess
      end

      # The handler for `Server`: `Server.new(listener, &adapter)`.
      def to_proc = method(:call).to_proc

      def call(req)
        env = env_for(req)
        status, headers, body = @app.call(env)
        return if req.connection.hijacked?

        respond(req, status.to_i, headers, body)
      ensure
        body.close if body.respond_to?(:close)
        env&.fetch('rack.after_reply', nil)&.each(&:call)
      end

      def env_for(req)
        conn = req.connection
        env = base_env(req, conn)
        env['rack.hijack'] = -> { env['rack.hijack_io'] = conn.hijack }
        req.headers.each { |k, v| env[RackAdapter.env_key(k)] = v }
        env
      end

      private

      def base_env(req, conn)
        host, port = server_name_port(req.host, conn)
        {
          'REQUEST_METHOD' => req.method, 'SCRIPT_NAME' => '', 'PATH_INFO' => req.path,
          'QUERY_STRING' => req.query_string || '', 'SERVER_NAME' => host, 'SERVER_PORT' => port,
          'SERVER_PROTOCOL' => req.protocol, 'SERVER_SOFTWARE' => SERVER_SOFTWARE,
          'REMOTE_ADDR' => req.remote_addr || '', 'rack.version' => RACK_VERSION,
          'rack.url_scheme' => conn.scheme, 'rack.input' => Input.new(req), 'rack.errors' => $stderr,
          'rack.multithread' => false, 'rack.multiprocess' => @multiprocess, 'rack.run_once' => false,
          'rack.hijack?' => true, 'rack.after_reply' => []
        }
      end

      # SERVER_NAME and SERVER_PORT: from the Host header, else the socket.
      def server_name_port(host, conn)
        return local_name_port(conn) unless host

        name, port = host.start_with?('[') ? host.split(/(?<=\]):/, 2) : host.split(':', 2)
        [name, port || default_port(conn)]
      end

      def local_name_port(conn)
        addr = conn.socket.to_io.local_address rescue nil # rubocop:disable Style/RescueModifier
        [addr&.ip_address || 'localhost', (addr&.ip_port || default_port(conn)).to_s]
      end

      def default_port(conn) = conn.scheme == 'https' ? '443' : '80'

      def respond(req, status, headers, body)
        out, hijack = response_headers(status, headers)
        return partial_hijack(req, out, hijack) if hijack

        if !body.respond_to?(:each) && body.respond_to?(:call)
          # A Rack 3 streaming body: it gets the socket after the head.
          body.call(req.hijack_after_head(out))
        elsif body.respond_to?(:to_path) && File.file?(body.to_path)
          File.open(body.to_path, 'rb') { |f| req.serve_io(f, out) }
        elsif body.is_a?(Array)
          respond_array(req, out, body)
        else
          respond_streaming(req, out, status, body)
        end
      end

      # The headers for `Request` (multi-line Rack 2 values split into
      # Arrays), and the response hijack callable if there is one.
      def response_headers(status, headers)
        hijack = nil
        out = { ':status' => status }
        headers.each do |k, v|
          next hijack = v if k == 'rack.hijack'

          out[k] = v.is_a?(String) && v.include?("\n") ? v.split("\n") : v
        end
        [out, hijack]
      end

      def respond_streaming(req, out, status, body)
        req.send_headers(out, status)
        body.each { |chunk| req.send_chunk(chunk) unless chunk.empty? }
        req.finish
      end

      def respond_array(req, out, body)
        data = body.size == 1 ? body[0].to_s : body.join
        req.respond(data, out)
      end

      # Response hijack: the head is written, then the app's callable owns
      # the socket.
      def partial_hijack(req, out, hijack)
        hijack.call(req.hijack_after_head(out))
      end

      # `rack.input`: reads the request body from the socket as the app
      # asks, and keeps what it read (in memory, then in a temporary file
      # past 1 MiB) so that `rewind` works.
      class Input
        SPOOL_LIMIT = 1 << 20

        def initialize(req)
          @req = req
          @spool = StringIO.new(+''.b)
          @pos = 0
        end

        # As `IO#read`: all that is left ("" at the end) without a length,
        # else up to `length` bytes (nil at the end).
        def read(length = nil, outbuf = nil)
          raise ArgumentError, "negative length #{length} given" if length&.negative?

          fill_to(length ? @pos + length : nil)
          @spool.pos = @pos
          data = @spool.read(length)
          @pos = @spool.pos
          return data unless outbuf

          outbuf.replace(data || '')
          data && outbuf
        end

        def gets
          loop do
            @spool.pos = @pos
            line = @spool.gets
            if line&.end_with?("\n") || @req.complete?
              @pos = @spool.pos if line
              return line
            end
            fill_to(spool_size + 1)
          end
        end

        def each
          while (line = gets)
            yield line
          end
        end

        def rewind
          @pos = 0
          0
        end

        def close; end

        def size
          fill_to(nil)
          spool_size
        end

        private

        def spool_size
          @spool.is_a?(StringIO) ? @spool.string.bytesize : @spool.size
        end

        # Reads from the socket until the spool holds `want` bytes (nil:
        # the whole body).
        def fill_to(want)
          while (want.nil? || spool_size < want) && (chunk = @req.next_chunk)
            @spool.seek(0, IO::SEEK_END)
            @spool.write(chunk)
            move_to_file if @spool.is_a?(StringIO) && spool_size > SPOOL_LIMIT
          end
        end

        def move_to_file
          file = Tempfile.new('polyphony-http-body')
          file.binmode
          file.unlink
          file.write(@spool.string)
          @spool = file
        end
      end
    end
  end
end
