# frozen_string_literal: true

require 'etc'

module Polyphony
  # A pool of worker threads for blocking or CPU-heavy work:
  # `process` runs a block on a worker while only the calling fiber waits.
  class ThreadPool
    attr_reader :size

    class << self
      # Runs the block on the default pool (created on first use).
      def process(&)
        (@default_pool ||= new).process(&)
      end

      # Stops and forgets the default pool.
      def reset
        @default_pool&.stop
        @default_pool = nil
      end
    end

    def initialize(size = Etc.nprocessors)
      Kernel.raise ArgumentError, 'size must be a positive Integer' unless size.is_a?(Integer) && size.positive?

      @size = size
      @tasks = Polyphony::Queue.new
      @threads = Array.new(size) { Thread.new { work } }
    end

    # Runs the block on a worker thread and returns its value (its exception
    # is raised here). Other fibers of this thread keep running.
    def process(&block)
      Kernel.raise ArgumentError, 'no block given' unless block

      @tasks << [block, Fiber.current]
      kind, value = Thread.current.backend.wait_event(true)
      Kernel.raise value if kind == :error

      value
    end

    # Runs the block on a worker, without waiting. An exception raised by
    # the block ends that worker thread.
    def cast(&block)
      Kernel.raise ArgumentError, 'no block given' unless block

      @tasks << [block, nil]
      self
    end

    # True if tasks are waiting for a worker.
    def busy?
      !@tasks.empty?
    end

    # Kills and joins the workers. Workers already ended by a failed `cast`
    # are not joined (joining would raise their exception again).
    def stop
      live = @threads.select(&:alive?)
      live.each(&:kill)
      live.each(&:join)
      self
    end

    private

    def work
      loop do
        block, fiber = @tasks.shift
        next block.call unless fiber

        begin
          fiber.schedule([:ok, block.call])
        rescue Exception => e # rubocop:disable Lint/RescueException
          fiber.schedule([:error, e])
        end
      end
    end
  end
end
