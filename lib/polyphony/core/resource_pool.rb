# frozen_string_literal: true

module Polyphony
  # A pool of up to `limit` lazily allocated resources, e.g.
  # database connections. `acquire` is re-entrant per fiber.
  class ResourcePool
    attr_reader :limit, :size

    # `ResourcePool.new(limit: 4) { allocate_resource }`.
    def initialize(limit: 4, &allocator)
      Kernel.raise ArgumentError, 'an allocator block is required' unless allocator
      Kernel.raise ArgumentError, 'limit must be a positive Integer' unless limit.is_a?(Integer) && limit.positive?

      @allocator = allocator
      @limit = limit
      @size = 0
      @stock = Polyphony::Queue.new
      @acquired = {}
      @discarded = {}
    end

    # Idle resources in stock.
    def available
      @stock.size
    end

    # Yields a resource (the same one to nested calls in one fiber); it goes
    # back to the pool when the outermost block exits, unless discarded.
    def acquire
      fiber = Fiber.current
      return yield @acquired[fiber] if @acquired.key?(fiber)

      begin
        @acquired[fiber] = checkout
        yield @acquired[fiber]
      ensure
        checkin(fiber)
      end
    end

    # Drops the current fiber's resource instead of returning it.
    def discard!
      @discarded[Fiber.current] = true if @acquired.key?(Fiber.current)
      self
    end

    # Allocates resources until `size == limit`.
    def fill!
      while @size < @limit
        @size += 1
        @stock.push(allocate)
      end
      self
    end

    def method_missing(name, *args, **kwargs, &)
      acquire { |r| r.public_send(name, *args, **kwargs, &) }
    end

    def respond_to_missing?(*)
      true
    end

    private

    # An idle resource (taken without a switch: a blocking `shift` is a
    # switchpoint, and another fiber checking out meanwhile would see the
    # stock still full and wait instead of allocating), else a new one while
    # under the limit, else the next one given back.
    def checkout
      return @stock.shift(true) unless @stock.empty?
      return @stock.shift if @size >= @limit

      @size += 1
      allocate
    end

    def allocate
      @allocator.call
    rescue Exception # rubocop:disable Lint/RescueException
      @size -= 1
      raise
    end

    def checkin(fiber)
      return unless @acquired.key?(fiber)

      resource = @acquired.delete(fiber)
      if @discarded.delete(fiber)
        @size -= 1
      else
        @stock.push(resource)
      end
    end
  end
end
