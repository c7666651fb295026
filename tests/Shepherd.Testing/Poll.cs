namespace Shepherd.Testing;

/// <summary>
/// Waits on a real server or process: looks again every few milliseconds of real time until
/// what it reads is what the test waits for, and fails after a bound instead of hanging.
/// </summary>
public static class Poll
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(25);

    /// <summary>Reads until <paramref name="done"/> holds and returns that reading; throws <see cref="TimeoutException"/> with the last one after <paramref name="limit"/> (a minute unless given).</summary>
    public static async Task<T> UntilAsync<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan? limit = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(read);
        ArgumentNullException.ThrowIfNull(done);
        var bound = limit ?? TimeSpan.FromMinutes(1);
        var deadline = TimeProvider.System.GetUtcNow() + bound;
        while (true)
        {
            var value = await read();
            if (done(value))
            {
                return value;
            }

            if (TimeProvider.System.GetUtcNow() >= deadline)
            {
                throw new TimeoutException($"What was waited for did not come within {bound.TotalSeconds:0} s; the last look saw: {value}");
            }

            await Task.Delay(Interval, TimeProvider.System, cancellationToken);
        }
    }

    /// <summary>Asks until <paramref name="condition"/> holds; throws <see cref="TimeoutException"/> after <paramref name="limit"/>.</summary>
    public static Task UntilAsync(Func<Task<bool>> condition, TimeSpan? limit = null, CancellationToken cancellationToken = default) =>
        UntilAsync(condition, holds => holds, limit, cancellationToken);
}
