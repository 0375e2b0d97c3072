# frozen_string_literal: true

module Polyphony
  # Streaming compression and HTTP chunking between IOs, Pipes, Strings and
  # callables (`IO.gzip`, `IO.gunzip`, `IO.deflate`, `IO.inflate`,
  # `IO.http1_splice_chunked`). The compression is native
  # (`Compression::Deflater`/`Inflater`, ext/polyphony/src/ruby_api/
  # compression.rs, on zlib-rs: about twice Ruby's Zlib, bench/README.md);
  # Ruby only moves 16 KiB chunks.
  # Reads and writes go through the fiber-aware IO methods, so only the
  # calling fiber waits.
  module Compression
    CHUNK = 16_384

    class << self
      def gzip(src, dest, opts = nil)
        opts ||= {}
        source = ChunkSource.new(src)
        sink = ChunkSink.new(dest)
        sink << GzipHeader.make(opts)
        crc = 0
        size = 0
        z = Deflater.new(true)
        while (chunk = source.read)
          crc = Compression.crc32(chunk, crc)
          size += chunk.bytesize
          sink << z.deflate(chunk)
        end
        sink << z.finish
        sink << [crc, size & 0xffffffff].pack('VV')
        sink.count
      end

      def gunzip(src, dest, info = nil)
        source = ChunkSource.new(src)
        sink = ChunkSink.new(dest)
        header = GzipHeader.read(source)
        GzipHeader.fill_info(info, header) if info.is_a?(Hash)
        z = Inflater.new(true)
        inflate_member(source, sink, z)
        source.read_exactly(8) # CRC and size (not verified)
        sink.count
      end

      def deflate(src, dest)
        source = ChunkSource.new(src)
        sink = ChunkSink.new(dest)
        z = Deflater.new(false)
        while (chunk = source.read)
          sink << z.deflate(chunk)
        end
        sink << z.finish
        sink.count
      end

      def inflate(src, dest)
        source = ChunkSource.new(src)
        sink = ChunkSink.new(dest)
        z = Inflater.new(false)
        inflate_member(source, sink, z)
        sink.count
      end

      # HTTP/1.1 chunked encoding of everything `src` has, to `dest`.
      def http1_splice_chunked(src, dest, maxlen)
        unless maxlen.is_a?(Integer) && maxlen.positive?
          Kernel.raise ArgumentError, "chunk size must be positive, got #{maxlen.inspect}"
        end

        backend = Thread.current.backend
        r, w = IO.pipe
        while (n = backend.splice(src, w, maxlen)).positive?
          backend.write(dest, "#{n.to_s(16)}\r\n")
          left = n
          left -= backend.splice(r, dest, left) while left.positive?
          backend.write(dest, "\r\n")
        end
        backend.write(dest, "0\r\n\r\n")
        dest
      ensure
        r&.close
        w&.close
      end

      private

      # Inflates one stream from `source` to `sink`; bytes past its end go
      # back to `source`.
      def inflate_member(source, sink, zstream)
        until zstream.finished?
          chunk = source.read or Kernel.raise(RuntimeError, 'zlib error: unexpected end of data')
          before = zstream.total_in
          sink << zstream.inflate(chunk)
          source.unread(chunk.byteslice((zstream.total_in - before)..)) if zstream.finished?
        end
      end
    end
  end

  # The gzip member header (RFC 1952): writing one with the fields asked
  # for, and reading one (extra field and header CRC skipped).
  module GzipHeader
    MAGIC = "\x1f\x8b".b.freeze
    FNAME = 0x08
    FCOMMENT = 0x10
    FEXTRA = 0x04
    FHCRC = 0x02
    # The OS byte of the headers written (3: Unix, as zlib's on Linux).
    OS_UNIX = 3

    module_function

    def make(opts)
      mtime = opts.fetch(:mtime, Time.now)
      mtime = 0 if mtime == false || mtime.nil?
      mtime = mtime.to_i
      flags = 0
      flags |= FNAME if opts[:orig_name]
      flags |= FCOMMENT if opts[:comment]
      header = MAGIC + [8, flags, mtime & 0xffffffff, 0, OS_UNIX].pack('CCVCC')
      header << "#{opts[:orig_name]}\0".b if opts[:orig_name]
      header << "#{opts[:comment]}\0".b if opts[:comment]
      header
    end

    # The fields of the gzip header at the start of `source`.
    def read(source)
      flags, mtime = read_fixed_header(source)
      skip_extra(source) if flags.anybits?(FEXTRA)
      name = read_zstring(source) if flags.anybits?(FNAME)
      comment = read_zstring(source) if flags.anybits?(FCOMMENT)
      source.read_exactly(2) if flags.anybits?(FHCRC)
      { mtime: mtime, orig_name: name, comment: comment }
    end

    # The flags and mtime of the 10 fixed bytes (magic, deflate method).
    def read_fixed_header(source)
      fixed = source.read_exactly(10)
      _, _, method, flags, mtime = fixed.unpack('CCCCV') if fixed.bytesize == 10
      Kernel.raise RuntimeError, 'Invalid gzip header' unless fixed.start_with?(MAGIC) && method == 8

      [flags, mtime]
    end

    def skip_extra(source)
      len = source.read_exactly(2).unpack1('v')
      source.read_exactly(len)
    end

    def read_zstring(source)
      out = +''.b
      loop do
        byte = source.read_exactly(1)
        Kernel.raise RuntimeError, 'Invalid gzip header' if byte.empty?
        return out if byte == "\0"

        out << byte
      end
    end

    def fill_info(info, header)
      info[:mtime] = Time.at(header[:mtime])
      info[:orig_name] = header[:orig_name]
      info[:comment] = header[:comment]
    end
  end

  # Reads chunks for `Polyphony::Compression` from a source: an IO or Pipe
  # (fiber-aware `readpartial`), a String (its bytes, once), or a callable
  # (called with the chunk size, returns a String or nil at the end). Bytes
  # read past what a call needs can be given back (`unread`) for the next
  # call on the same IO.
  class ChunkSource
    def initialize(src)
      @io = src.is_a?(Polyphony::Pipe) ? src.__read_io__ : src
      @reader = reader_for(src)
    end

    # The next chunk, or nil at the end.
    def read
      return @pushed.slice!(0..) unless @pushed.nil? || @pushed.empty?

      @reader.call(Compression::CHUNK)
    end

    # Exactly `count` bytes (fewer at the end).
    def read_exactly(count)
      out = +''.b
      while out.bytesize < count
        chunk = read or break
        out << chunk.b
      end
      unread(out.byteslice(count..)) if out.bytesize > count
      out.byteslice(0, count)
    end

    # Gives `bytes` back: the next read returns them first (and an IO keeps
    # them for its next reader).
    def unread(bytes)
      return if bytes.nil? || bytes.empty?

      if @io.is_a?(IO)
        @io.ungetbyte(bytes)
      else
        (@pushed ||= +''.b).prepend(bytes)
      end
    end

    private

    def reader_for(src)
      case src
      when String
        data = src.b
        ->(_) { data.empty? ? nil : data.slice!(0..) }
      when IO, Polyphony::Pipe then ->(max) { read_io(src, max) }
      else
        Kernel.raise RuntimeError, 'Unsupported read method' unless src.respond_to?(:call)

        src
      end
    end

    def read_io(src, max)
      src.readpartial(max)
    rescue EOFError
      nil
    end
  end

  # Writes for `Polyphony::Compression` to a destination: an IO or Pipe, a
  # String (appended to), or a callable (called with each chunk). Counts
  # the bytes.
  class ChunkSink
    attr_reader :count

    def initialize(dest)
      @dest = dest
      @count = 0
      case dest
      when String then dest.frozen? && Kernel.raise(FrozenError.new("can't modify frozen String", receiver: dest))
      when IO, Polyphony::Pipe then nil
      else
        Kernel.raise RuntimeError, 'Unsupported write method' unless dest.respond_to?(:call)
      end
    end

    def <<(data)
      return self if data.nil? || data.empty?

      case @dest
      when String then @dest << data
      when IO, Polyphony::Pipe then @dest.write(data)
      else @dest.call(data)
      end
      @count += data.bytesize
      self
    end
  end
end

# The class methods of the streaming compression API.
class ::IO
  class << self
    # gzip-compresses `src` to `dest` (IOs, Pipes, Strings or callables);
    # `opts`: `:mtime` (Integer, Time, or false for 0; now by default),
    # `:orig_name`, `:comment`. The bytes written.
    def gzip(src, dest, opts = nil)
      Polyphony::Compression.gzip(src, dest, opts)
    end

    # Decompresses one gzip member of `src` to `dest`; fills `info` (a Hash)
    # with `:mtime` (a Time), `:orig_name` and `:comment`. Consecutive
    # members are read by consecutive calls on the same IO. The bytes
    # written.
    def gunzip(src, dest, info = nil)
      Polyphony::Compression.gunzip(src, dest, info)
    end

    # zlib-format compression of `src` to `dest`. The bytes written.
    def deflate(src, dest)
      Polyphony::Compression.deflate(src, dest)
    end

    # zlib-format decompression of `src` to `dest`. The bytes written.
    def inflate(src, dest)
      Polyphony::Compression.inflate(src, dest)
    end

    # Splices `src` to `dest` as HTTP/1.1 chunked encoding (chunks of at
    # most `maxlen` bytes, then the final empty chunk). Returns dest.
    def http1_splice_chunked(src, dest, maxlen)
      Polyphony::Compression.http1_splice_chunked(src, dest, maxlen)
    end
  end
end
