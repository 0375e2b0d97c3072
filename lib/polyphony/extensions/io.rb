# frozen_string_literal: true

require 'fcntl'

require 'io/wait'
require 'io/nonblock'

# Fiber-aware IO. Every method here parks only the calling fiber
# while it waits; other fibers of the thread keep running.
#
# Reads share a per-IO buffer (`@read_buffer`; the bytes before
# `@read_pos` are already taken, so taking a line costs no copy of the rest):
# `gets`, `read`,
# `getc`, `readpartial`, `read_nonblock`, `each_line`, … all take from it
# first, so mixing them never reorders or hides data. Ruby's own internal IO
# buffer is not used by these methods.
#
# Where Polyphony 1.6 and the standard library disagree, the standard
# library's behaviour wins (docs/differences.md): `read(n)` returns `nil` at
# EOF, an unterminated last line is returned, `read_nonblock` honours
# `exception:`.
module Polyphony
  # Shared by `IO` and `Polyphony::Pipe`: zero-copy moves into `self`, and the
  # fast-path protocol parsers use to pick a backend method.
  module SpliceTarget
    # Moves up to `maxlen` bytes from pipe `src` (negative: until EOF).
    def splice_from(src, maxlen)
      Polyphony.backend_splice(src, self, maxlen)
    end

    # Copies up to `maxlen` bytes from pipe `src` without consuming them.
    def tee_from(src, maxlen)
      Polyphony.backend_tee(src, self, maxlen)
    end

    def __read_method__
      :backend_read
    end

    def __write_method__
      :backend_write
    end
  end
end

# The fiber-aware instance methods (see the top of this file).
class ::IO
  CHUNK_SIZE = 8192
  private_constant :CHUNK_SIZE

  # The stock methods, for code that wants them.
  %i[read write readpartial gets each_line getc getbyte ungetc ungetbyte
     read_nonblock write_nonblock readline readlines readchar readbyte each_char each_byte
     eof? wait_readable wait_writable close close_read reopen puts pos seek pos= rewind].each do |m|
    alias_method :"orig_#{m}", m unless method_defined?(:"orig_#{m}")
  end

  # Bytes Ruby buffered before this file was loaded go out first.
  [$stdout, $stderr].each { |io| io.flush if io.respond_to?(:flush) && !io.closed? }

  include Polyphony::SpliceTarget

  # Reads `len` bytes (all of them until EOF when `len` is nil). With `buf`
  # the data is placed into it at byte `buf_pos` (stdlib: the buffer's
  # contents are replaced). Returns `nil` at EOF when `len` is positive, `""`
  # when it is nil (docs/differences.md, **read(n) at EOF**).
  def read(len = nil, buf = nil, buf_pos = 0)
    return __read_all__(buf, buf_pos) if len.nil?

    len = __check_length__(len)
    return __deliver__(+'', buf, buf_pos) if len.zero?

    if buf && !__buffered?
      return Polyphony.backend_read(self, buf, len, true, buf_pos) || __empty_buffer__(buf, buf_pos)
    end

    __fill_read_buffer__(len)
    data = __take_bytes__(len)
    data ? __deliver__(data, buf, buf_pos) : __empty_buffer__(buf, buf_pos)
  end

  # One read of at most `maxlen` bytes (buffered bytes first). At EOF raises
  # `EOFError`, or returns `nil` if `raise_on_eof` is false.
  def readpartial(maxlen, buf = nil, buf_pos = 0, raise_on_eof = true)
    maxlen = __check_length__(maxlen)
    return __deliver__(+'', buf, buf_pos) if maxlen.zero?
    return __deliver__(__take_bytes__(maxlen), buf, buf_pos) if __buffered?

    buf ||= (+'').force_encoding(Encoding::BINARY)
    return buf if Polyphony.backend_read(self, buf, maxlen, false, buf_pos)

    __empty_buffer__(buf, buf_pos)
    raise EOFError, 'end of file reached' if raise_on_eof

    nil
  end

  # Truly non-blocking (stdlib semantics): buffered bytes first (then what an
  # interrupted read kept, docs/io-semantics.md), otherwise
  # the stock `read_nonblock`, which raises `IO::WaitReadable` — or returns
  # `:wait_readable` with `exception: false` — when nothing is available, and
  # returns `nil` at EOF with `exception: false`.
  # (A third positional Hash, Polyphony's `_opts`, may carry `exception:`
  # too.)
  def read_nonblock(maxlen, buf = nil, opts = nil, exception: true)
    exception = opts.fetch(:exception, exception) if opts.is_a?(Hash)
    maxlen = __check_length__(maxlen)
    __take_pending__(maxlen, buf) || orig_read_nonblock(maxlen, buf, exception: exception)
  end

  # Stock `write_nonblock`; a positional Hash (Polyphony's `_opts`) may
  # carry `exception:` too.
  def write_nonblock(str, opts = nil, exception: true)
    exception = opts.fetch(:exception, exception) if opts.is_a?(Hash)
    orig_write_nonblock(str, exception: exception)
  end

  # Writes every byte of every argument; returns the total byte count.
  # `write` is `__write_fast__` (native: one String, no transcoding), which
  # hands everything else to this.
  def __write__(*args)
    return 0 if args.empty?

    enc = external_encoding
    args = enc && enc != Encoding::BINARY ? __encode__(args, enc) : args.map { |a| __as_string__(a) }
    Polyphony.backend_write(self, *args)
  rescue Errno::EBADF
    raise IOError, 'not opened for writing' unless closed?

    raise
  end

  private :__write__

  alias write __write_fast__

  def <<(obj)
    write(obj.to_s)
    self
  end

  # Stdlib `puts` (arrays are flattened, a newline is added after each line
  # that lacks one), written with one `write`.
  def puts(*args)
    return (write("\n") && nil) if args.empty?

    parts = []
    __puts_parts__(args, parts, {}.compare_by_identity)
    Polyphony.backend_write(self, *parts)
    nil
  end

  # The next line (separator included, unless `chomp: true`); `nil` at EOF.
  # An unterminated last line is returned (docs/differences.md, **unterminated last line**). `sep` nil reads everything;
  # `limit` caps the line's byte length.
  def gets(*args, chomp: false)
    sep, limit = __line_args__(args)
    line = limit&.zero? ? +'' : __next_line__(sep, limit)
    return nil unless line

    line = __chomp_line__(line, sep) if chomp
    __decode__(line)
  end

  def readline(*args, chomp: false)
    gets(*args, chomp: chomp) || raise(EOFError, 'end of file reached')
  end

  def readlines(*args, chomp: false)
    lines = []
    while (line = gets(*args, chomp: chomp))
      lines << line
    end
    lines
  end

  def each_line(*args, chomp: false)
    return enum_for(:each_line, *args, chomp: chomp) unless block_given?

    while (line = gets(*args, chomp: chomp))
      yield line
    end
    self
  end
  alias each each_line

  def getbyte
    __fill_read_buffer__(1)
    return nil unless __buffered?

    b = @read_buffer.getbyte(@read_pos)
    __skip__(1)
    b
  end

  def readbyte
    getbyte || raise(EOFError, 'end of file reached')
  end

  def each_byte
    return enum_for(:each_byte) unless block_given?

    while (b = getbyte)
      yield b
    end
    self
  end

  # The next character in the IO's external encoding; `nil` at EOF.
  def getc
    enc = __read_encoding__
    max = [Encoding::BINARY, Encoding::US_ASCII].include?(enc) ? 1 : 4
    (1..max).each do |n|
      __fill_read_buffer__(n)
      avail = __avail__
      return nil if avail.zero?

      short = avail < n
      return __take_bytes__(n).force_encoding(enc) if short || __peek__(n).force_encoding(enc).valid_encoding?
    end
    __take_bytes__(1).force_encoding(enc)
  end

  def readchar
    getc || raise(EOFError, 'end of file reached')
  end

  def each_char
    return enum_for(:each_char) unless block_given?

    while (c = getc)
      yield c
    end
    self
  end

  # Pushes `str` (or the byte/character `int`) back onto the read buffer.
  def ungetc(obj)
    str = obj.is_a?(Integer) ? obj.chr(__read_encoding__) : String(obj)
    __unshift__(str)
  end

  def ungetbyte(obj)
    str = obj.is_a?(Integer) ? (obj & 0xff).chr : String(obj)
    __unshift__(str)
  end

  def eof?
    __fill_read_buffer__(1)
    !__buffered?
  end
  alias eof eof?

  # Yields chunks of up to `maxlen` bytes (new Strings) until EOF.
  def read_loop(maxlen = CHUNK_SIZE, &)
    data = __take_read_buffer__
    yield data if data && !data.empty?
    Polyphony.backend_read_loop(self, maxlen, &)
  end

  # Calls `receiver.__send__(method, chunk, &block)` for each chunk read.
  def feed_loop(receiver, method = :call, &)
    data = __take_read_buffer__
    receiver.__send__(method, data, &) if data && !data.empty?
    Polyphony.backend_feed_loop(self, receiver, method, &)
  end

  # `self` once readable (at once if bytes are buffered); `nil` if `timeout`
  # seconds pass first.
  def wait_readable(timeout = nil)
    return self if __pending?

    __wait_io__(false, timeout)
  end

  def wait_writable(timeout = nil)
    __wait_io__(true, timeout)
  end

  # What interrupted reads kept for this IO (docs/io-semantics.md) dies with
  # its file: on `close_read` and `reopen` as on `close`.
  def close_read
    __discard_kept__
    orig_close_read
  end

  def reopen(*args, **opts)
    __discard_kept__
    orig_reopen(*args, **opts)
  end

  # Closes the IO; other fibers waiting on it get `IOError`. `nil`.
  def close
    return nil if closed?

    pid = self.pid
    return __close_popen__(pid) if pid

    Thread.current.backend.close(self)
    nil
  end

  private

  # Closing an `IO.popen` IO waits for the child, as stock does, but
  # without blocking the other fibers: the pipe ends are replaced with
  # /dev/null (the child sees EOF or SIGPIPE, as after a stock close), then
  # the child is waited for (fiber-aware; sets `$?`), then the IO closed.
  # Returns nil.
  def __close_popen__(pid)
    write_io = __send__(:__write_io__)
    if write_io.equal?(self)
      __detach_pipe__(self, (fcntl(Fcntl::F_GETFL) & Fcntl::O_ACCMODE) == Fcntl::O_WRONLY)
    else
      __detach_pipe__(write_io, true)
      __detach_pipe__(self, false)
    end
    pid = __wait_popen_child__(pid)
  ensure
    Thread.current.backend.close(self) unless closed?
    # Interrupted before the child was reaped: reap it in the background.
    ::Process.detach(pid) if pid
  end

  # nil once reaped (also if someone else reaped it already).
  def __wait_popen_child__(pid)
    ::Process.wait(pid)
    nil
  rescue Errno::ECHILD
    nil
  end

  def __detach_pipe__(io, write)
    return if io.closed?

    io.flush if write
    File.open(File::NULL, write ? 'w' : 'r') { |null| io.reopen(null) }
  end

  def __wait_io__(write, timeout)
    return (Polyphony.backend_wait_io(self, write) && self) if timeout.nil?

    move_on_after(timeout) do
      Polyphony.backend_wait_io(self, write)
      self
    end
  end

  def __read_encoding__
    external_encoding || Encoding.default_external
  end

  def __buffered?
    rb = @read_buffer
    rb && rb.bytesize > @read_pos
  end

  # Whether bytes wait before anything the fd has: buffered by `gets` & co.,
  # or kept by an interrupted read (docs/io-semantics.md).
  def __pending?
    __buffered? || __kept?
  end

  # What a read that does not go through the backend (`read_nonblock`,
  # `recv_nonblock`) must deliver before the fd's bytes: up to `maxlen` of
  # the buffered bytes, else of the kept ones (into `buf` if given); nil if
  # there are none.
  def __take_pending__(maxlen, buf)
    return nil unless maxlen.positive?
    return __deliver__(__take_bytes__(maxlen), buf, 0) if __buffered?

    kept = __take_kept__(maxlen)
    kept && __deliver__(kept, buf, 0)
  end

  # How many bytes are buffered.
  def __avail__
    rb = @read_buffer
    rb ? rb.bytesize - @read_pos : 0
  end

  # `data`, or `buf` holding it from `pos` on.
  def __deliver__(data, buf, pos)
    buf ? __into_buffer__(buf, data, pos) : data
  end

  # Everything until EOF, buffered bytes first.
  def __read_all__(buf, buf_pos)
    data = __take_read_buffer__ || (+'').force_encoding(Encoding::BINARY)
    Polyphony.backend_read(self, data, nil, true, -1)
    __deliver__(__decode__(data), buf, buf_pos)
  end

  # Text read: tagged with the external encoding, transcoded to the internal
  # one if the IO has one (`'r:ISO-8859-1:UTF-8'`), as stdlib does.
  def __decode__(str)
    str.force_encoding(__read_encoding__)
    int = internal_encoding
    int ? str.encode(int) : str
  end

  # Text written to an IO with an explicit external encoding is transcoded
  # to it, as stdlib does (binary strings are written as they are).
  # What stock `IO#write` writes for `obj`: its `to_s`, or `Object#to_s`
  # if that is not a String (`rb_obj_as_string`).
  def __as_string__(obj)
    return obj if obj.is_a?(String)

    s = obj.to_s
    s.is_a?(String) ? s : Kernel.instance_method(:to_s).bind_call(obj)
  end

  def __encode__(args, enc)
    args.map do |a|
      s = __as_string__(a)
      s.encoding == enc || s.encoding == Encoding::BINARY || s.ascii_only? ? s : s.encode(enc)
    end
  end

  public

  # The logical position: bytes read ahead into the read buffer are not
  # counted as read.
  def pos
    orig_pos - __avail__
  end
  alias tell pos

  # Seeking drops the read-ahead (a relative seek accounts for it first).
  def seek(offset, whence = IO::SEEK_SET)
    offset -= __avail__ if [IO::SEEK_CUR, :CUR].include?(whence)
    @read_buffer = nil
    orig_seek(offset, whence)
  end

  def pos=(offset)
    @read_buffer = nil
    self.orig_pos = offset
  end

  def rewind
    @read_buffer = nil
    orig_rewind
  end

  private

  def __check_length__(len)
    len = Integer(len)
    raise ArgumentError, "negative length #{len} given" if len.negative?

    len
  end

  # Makes sure at least `len` bytes are buffered (fewer at EOF).
  def __fill_read_buffer__(len)
    return if __avail__ >= len

    rb = __rbuf__
    loop { break if rb.bytesize >= len || !__more__(rb, len - rb.bytesize) }
  end

  # The read buffer ready to be appended to: bytes already taken are dropped
  # here (one copy per refill, not per line taken).
  def __rbuf__
    rb = @read_buffer
    pos = @read_pos
    if rb.nil?
      @read_pos = 0
      return @read_buffer = (+'').force_encoding(Encoding::BINARY)
    end
    return rb if pos.zero?

    @read_pos = 0
    @read_buffer = rb.byteslice(pos, rb.bytesize - pos)
  end

  # The next `len` buffered bytes, left in the buffer.
  def __peek__(len)
    @read_buffer.byteslice(@read_pos, len)
  end

  def __skip__(len)
    @read_pos += len
    @read_buffer = nil if @read_pos >= @read_buffer.bytesize
  end

  def __unshift__(str)
    @read_buffer = str.b + (__take_read_buffer__ || '')
    @read_pos = 0
    nil
  end

  # One read into the buffer; false at EOF.
  def __more__(buf, want)
    !Polyphony.backend_read(self, buf, [want, CHUNK_SIZE].max, false, -1).nil?
  end

  # Removes and returns up to `len` buffered bytes (`nil` if none).
  def __take_bytes__(len)
    rb = @read_buffer
    return nil unless rb

    pos = @read_pos
    avail = rb.bytesize - pos
    if avail <= len
      @read_buffer = nil
      return nil if avail.zero?

      return pos.zero? ? rb : rb.byteslice(pos, avail)
    end
    @read_pos = pos + len
    rb.byteslice(pos, len)
  end

  # Everything buffered (`nil` if nothing).
  def __take_read_buffer__
    __take_bytes__(__avail__)
  end

  def __into_buffer__(buf, data, pos)
    return nil unless buf

    raise FrozenError, "can't modify frozen String: #{buf.inspect}" if buf.frozen?

    pos = buf.bytesize if pos.negative? || pos > buf.bytesize
    buf.force_encoding(Encoding::BINARY)
    buf[pos..] = data.b
    buf
  end

  # At EOF the caller's buffer is truncated to `pos` (stdlib empties it).
  def __empty_buffer__(buf, pos)
    return nil unless buf

    pos = buf.bytesize if pos.negative? || pos > buf.bytesize
    buf.force_encoding(Encoding::BINARY)
    buf[pos..] = ''
    nil
  end

  # `[separator, limit]` from `gets`' arguments (`gets(limit)`,
  # `gets(sep)`, `gets(sep, limit)`); a negative limit means none.
  def __line_args__(args)
    raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 0..2)" if args.size > 2

    args = [$/, *args] if args.size == 1 && args[0].is_a?(Integer)
    sep = args.empty? ? $/ : args[0]
    [sep.nil? ? nil : String(sep), __line_limit__(args[1])]
  end

  def __line_limit__(arg)
    limit = arg.nil? ? nil : Integer(arg)
    limit&.negative? ? nil : limit
  end

  def __next_line__(sep, limit)
    return __read_all_or_limit__(limit) if sep.nil?

    sep = sep.empty? ? "\n\n" : sep.b
    from = 0 # relative to the first buffered byte
    loop do
      if @read_buffer
        len = __line_length__(sep, limit, from)
        return __take_bytes__(len) if len

        from = [__avail__ - sep.bytesize + 1, 0].max
      end
      return __take_read_buffer__ unless __more__(__rbuf__, CHUNK_SIZE)
    end
  end

  # The byte length of the buffered line (searching for `sep` from the
  # buffered byte `from` on), or nil if more bytes are needed.
  def __line_length__(sep, limit, from)
    pos = @read_pos
    idx = @read_buffer.index(sep, pos + from)
    len = idx && (idx - pos + sep.bytesize)
    return len if len && (limit.nil? || len <= limit)

    limit if limit && __avail__ >= limit
  end

  def __read_all_or_limit__(limit)
    if limit
      __fill_read_buffer__(limit)
      return __take_bytes__(limit)
    end
    data = read
    data.empty? ? nil : data
  end

  def __chomp_line__(line, sep)
    return line.chomp if [$/, "\n"].include?(sep)

    line.end_with?(sep.b) ? line.byteslice(0, line.bytesize - sep.bytesize) : line
  end

  def __puts_parts__(args, parts, seen)
    args.each do |a|
      if a.is_a?(Array)
        raise ArgumentError, 'recursive array join' if seen[a]

        seen[a] = true
        __puts_parts__(a, parts, seen)
        seen.delete(a)
        next
      end
      s = a.nil? ? '' : a.to_s
      s = a.inspect unless s.is_a?(String)
      parts << s
      parts << "\n" unless s.end_with?("\n")
    end
  end
end

# Fiber-aware class methods, with the standard library's
# signatures. Paths starting with `|` (commands) go to the stock methods.
class ::IO
  class << self
    %i[read write binread binwrite readlines foreach copy_stream popen].each do |m|
      alias_method :"orig_#{m}", m unless method_defined?(:"orig_#{m}")
    end

    def read(name, length = nil, offset = nil, mode: 'r', **opts)
      return orig_read(name, length, offset, mode: mode, **opts) if __command__?(name)

      File.open(name, mode, **opts) do |f|
        f.seek(offset) if offset
        length ? f.read(length) : f.read
      end
    end

    def binread(name, length = nil, offset = nil)
      read(name, length, offset, mode: 'rb')
    end

    def write(name, data, offset = nil, mode: nil, **opts)
      return orig_write(name, data, offset, **opts) if __command__?(name)

      mode ||= offset ? File::WRONLY | File::CREAT : 'w'
      File.open(name, mode, **opts) do |f|
        f.seek(offset) if offset
        f.write(data)
      end
    end

    def binwrite(name, data, offset = nil)
      mode = offset ? File::WRONLY | File::CREAT | File::BINARY : 'wb'
      write(name, data, offset, mode: mode)
    end

    def readlines(name, *args, chomp: false, **opts)
      return orig_readlines(name, *args, chomp: chomp, **opts) if __command__?(name)

      File.open(name, 'r', **opts) { |f| f.readlines(*args, chomp: chomp) }
    end

    def foreach(name, *args, chomp: false, **opts, &block)
      return enum_for(:foreach, name, *args, chomp: chomp, **opts) unless block
      return orig_foreach(name, *args, chomp: chomp, **opts, &block) if __command__?(name)

      File.open(name, 'r', **opts) { |f| f.each_line(*args, chomp: chomp, &block) }
      nil
    end

    # Copies `src` to `dst` (IOs, IO-like objects or paths); with
    # `copy_length`, at most that many bytes; with `src_offset`, from that
    # offset of `src`. Returns the byte count.
    def copy_stream(src, dst, copy_length = nil, src_offset = nil)
      src_io = __stream__(src, 'rb')
      dst_io = __stream__(dst, 'wb')
      src_io.seek(src_offset) if src_offset
      __copy__(src_io, dst_io, copy_length)
    ensure
      src_io.close if src_io && !src_io.equal?(src)
      dst_io.close if dst_io && !dst_io.equal?(dst)
    end

    def splice(src, dest, maxlen)
      Polyphony.backend_splice(src, dest, maxlen)
    end

    def tee(src, dest, maxlen)
      Polyphony.backend_tee(src, dest, maxlen)
    end

    def double_splice(src, dest)
      Polyphony.backend_double_splice(src, dest)
    end

    private

    def __command__?(name)
      name.is_a?(String) && name.start_with?('|')
    end

    # As stdlib's copy_stream: an IO is used as it is (on Ruby >= 3.2 every
    # IO has `to_path`, nil for a pipe or socket); a String or an object with
    # `to_path` (Pathname) is a file name, opened here.
    def __stream__(obj, mode)
      return obj if obj.is_a?(IO)
      return File.open(obj, mode) if obj.is_a?(String)
      return File.open(obj.to_path, mode) if obj.respond_to?(:to_path)

      obj
    end

    def __copy__(src, dst, length)
      total = 0
      buf = +''
      while length.nil? || total < length
        want = length ? [length - total, 65_536].min : 65_536
        chunk = __read_chunk__(src, want, buf)
        break if chunk.nil? || chunk.empty?

        dst.write(chunk)
        total += chunk.bytesize
      end
      total
    end

    def __read_chunk__(src, want, buf)
      return src.read(want, buf) unless src.respond_to?(:readpartial)

      src.readpartial(want, buf)
    rescue EOFError
      nil
    end
  end
end

# `Kernel#gets`: with file names in `ARGV`, their lines in turn (stock
# `ARGF`: every line of every file, a file named twice read twice, a missing
# one raising `Errno::ENOENT`), then `$stdin`; without, `$stdin`
# (fiber-aware).
module Kernel
  alias orig_gets gets unless method_defined?(:orig_gets)

  # Whether ARGF is in the middle of the files named in ARGV (it takes each
  # name off ARGV when it opens the file, so ARGV alone does not tell).
  ARGF_READING = [false] # rubocop:disable Style/MutableConstant

  def gets(*args, **opts)
    if ARGF_READING[0] || !ARGV.empty?
      ARGF_READING[0] = true
      line = orig_gets(*args, **opts)
      return line if line

      ARGF_READING[0] = false
    end
    $stdin.gets(*args, **opts)
  end
  module_function :gets
end
