# frozen_string_literal: true

# Polyphony::Pipe and Polyphony.pipe.
module Polyphony
  # Both ends of an anonymous pipe in one object. Reads use the
  # read end, writes the write end; every backend primitive accepts it.
  # `#close` closes the write end only, so readers then see EOF. Both fds are
  # closed when the object is garbage-collected.
  class Pipe
    # Raised by writes after `#close`.
    class ClosedPipeError < RuntimeError; end

    include SpliceTarget

    def initialize
      @r, @w = ::IO.pipe
      @r.binmode
      @w.binmode
      @w.sync = true
    end

    # `[read_fd, write_fd]`.
    def fds
      [@r.fileno, @w.fileno]
    end

    # Closes the write end; readers see EOF once the pipe is drained.
    def close
      raise 'Pipe is already closed for writing' if @w.closed?

      @w.close
      self
    end

    def closed?
      @w.closed?
    end

    # The read end (used by the backend for read operations).
    def __read_io__
      @r
    end

    # The write end (used by the backend for write operations).
    def __write_io__
      raise ClosedPipeError, 'Pipe is closed for writing' if @w.closed?

      @w
    end

    # Like `IO#read`, but returns `nil` at EOF in every form.
    def read(len = nil, buf = nil, buf_pos = 0)
      data = @r.read(len, buf, buf_pos)
      return nil if data.nil? || (len.nil? && data.empty? && buf.nil?)

      data
    end

    def readpartial(len, buf = nil, buf_pos = 0, raise_on_eof = true)
      @r.readpartial(len, buf, buf_pos, raise_on_eof)
    end

    def write(*args)
      __write_io__.write(*args)
    end

    def <<(obj)
      __write_io__ << obj
      self
    end

    def puts(*args)
      __write_io__.puts(*args)
    end

    %i[gets getc getbyte each_line read_loop feed_loop wait_readable read_nonblock].each do |meth|
      define_method(meth) { |*args, **kw, &block| @r.__send__(meth, *args, **kw, &block) }
    end

    def write_nonblock(*args, **opts)
      __write_io__.write_nonblock(*args, **opts)
    end

    def wait_writable(timeout = nil)
      __write_io__.wait_writable(timeout)
    end
  end

  # A new `Polyphony::Pipe`.
  def self.pipe
    Pipe.new
  end
end
