using System.Buffers;
using System.Collections.Concurrent;
using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Storage;

/// <summary>A successful answer as the cache keeps it: what the provider sent back, and its tokens.</summary>
/// <param name="StatusCode">The HTTP status of the answer.</param>
/// <param name="Body">The answer body.</param>
/// <param name="InputTokens">Input tokens the provider reported.</param>
/// <param name="OutputTokens">Output tokens the provider reported.</param>
/// <param name="CachedTokens">Of the input, tokens the provider read from its own cache.</param>
public sealed record CachedAnswer(int StatusCode, byte[] Body, int InputTokens, int OutputTokens, int CachedTokens);

/// <summary>What a cache holds.</summary>
/// <param name="Entries">Answers kept.</param>
/// <param name="Bytes">Their bodies' size.</param>
/// <param name="Oldest">When the oldest was kept; null when empty.</param>
public sealed record AnswerCacheStats(long Entries, long Bytes, DateTimeOffset? Oldest);

/// <summary>
/// Answers kept across runs and batches, by a key derived from what the provider sees (its kind,
/// the tenant, the endpoint, and the body as sent). Lookups come in chunks, one query each; answers
/// to keep, and the marks of answers used, are written behind: held while more keep coming (and
/// found by lookups meanwhile), written once a moment passes without one, 32 MB are held or 5 s have passed, in
/// groups, each group one transaction, so a crash never leaves half an entry. The cache stays
/// within its size, dropping the answers used longest ago first, and an answer older than its age
/// limit is neither used nor kept. Memory stays flat whatever the cache holds: at most 64 MB of
/// answers wait to be written, and one that comes past that is not kept.
/// </summary>
/// <remarks>
/// This type holds what every backend shares (the write-behind, the size and age rules); a backend
/// (<see cref="SqliteAnswerCache"/>, <see cref="PostgresAnswerCache"/>) holds only its SQL. Several
/// processes may share one cache: each keeps a running estimate of the cache's size (the size it last
/// read plus what it wrote since), and reads the true size again when its estimate passes the
/// cap and at least every <see cref="SizeReading"/>. So the cache outgrows its cap by at most what
/// the other writers keep in that time, and the first writer to read that size evicts it back down.
/// </remarks>
public abstract class AnswerCache : IAsyncDisposable
{
    /// <summary>The most often a writer goes without reading the cache's true size.</summary>
    public static readonly TimeSpan SizeReading = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How many bytes of answers the writer holds while more keep coming: a run's sending pays
    /// nothing for the writes until then, and the writes go in a few large transactions.
    /// </summary>
    private const long HoldBytes = 32L << 20;

    /// <summary>How long without a new answer before the writer writes what it holds.</summary>
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(250);

    /// <summary>The longest the writer holds an answer: a crash loses at most this much of the cache's answers (never the batch's).</summary>
    private static readonly TimeSpan MostHeld = TimeSpan.FromSeconds(5);

    /// <summary>The most answers (and marks of use) written in one transaction.</summary>
    private const int GroupSize = 2000;

    /// <summary>A key is the 64 lower-case hex digits of a SHA-256.</summary>
    private const int KeyLength = 64;

    private static readonly SearchValues<char> HexDigits = SearchValues.Create("0123456789abcdef");

    private readonly Channel<Pending> _pending = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>The answers held to be written, found by lookups before they are.</summary>
    private readonly ConcurrentDictionary<string, CachedAnswer> _held = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _closing = new();
    private long _heldBytes;
    private long _added;
    private readonly SemaphoreSlim _writing = new(1, 1);
    private Task _writer = Task.CompletedTask;
    private long _bytes;
    private DateTimeOffset _sizeReadAt;

    /// <summary>Checks the limits; the backend opens its storage in <see cref="PrepareAsync"/>.</summary>
    /// <param name="where">Where the cache is, for messages.</param>
    /// <param name="maxBytes">The most bytes of answer bodies kept.</param>
    /// <param name="maxAge">How long an answer is kept.</param>
    /// <param name="time">The clock of ages and uses.</param>
    protected AnswerCache(string where, long maxBytes, TimeSpan maxAge, TimeProvider time)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(where);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(maxAge, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(time);
        Where = where;
        MaxBytes = maxBytes;
        MaxAge = maxAge;
        Time = time;
    }

    /// <summary>Where the cache is: its file, or its database.</summary>
    public string Where { get; }

    /// <summary>The most bytes of answer bodies kept.</summary>
    public long MaxBytes { get; }

    /// <summary>How long an answer is kept.</summary>
    public TimeSpan MaxAge { get; }

    /// <summary>The clock of ages and uses.</summary>
    protected TimeProvider Time { get; }

    /// <summary>
    /// The key of a request: the provider's kind, the tenant (when there is one: a tenant's keys never
    /// match another's), the endpoint and the body as sent. A request that asks for sampling has a key
    /// like any other: its answer is replayed, not drawn again.
    /// </summary>
    public static string KeyOf(UpstreamKind kind, string? tenant, string endpoint, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        // Length first: no tenant's name can run into the next line and pass for another's.
        var head = $"{(tenant is null ? "" : $"tenant {Encoding.UTF8.GetByteCount(tenant)} {tenant}\n")}{(kind == UpstreamKind.Anthropic ? "anthropic" : "openai")}\n{endpoint}\n";
        // One hash over one buffer: cheaper, per request, than an incremental hash of each part.
        var length = Encoding.UTF8.GetByteCount(head) + body.Length;
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var written = Encoding.UTF8.GetBytes(head, buffer);
            body.CopyTo(buffer.AsSpan(written));
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(buffer.AsSpan(0, length), hash);
            return Convert.ToHexStringLower(hash);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The kept answers of <paramref name="keys"/> (each as <see cref="KeyOf"/> gives it) that are young enough, by key; each found is marked as just used.</summary>
    public async Task<IReadOnlyDictionary<string, CachedAnswer>> FindAsync(IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(keys);
        foreach (var key in keys)
        {
            CheckKey(key);
        }

        if (keys.Count == 0)
        {
            return new Dictionary<string, CachedAnswer>(StringComparer.Ordinal);
        }

        var now = Time.GetUtcNow();
        // What is held to be written is found as it is; the rest is looked up.
        var held = _held.IsEmpty ? [] : keys.Where(_held.ContainsKey).ToList();
        var found = held.Count == keys.Count ? []
            : await LookUpAsync(held.Count == 0 ? keys : [.. keys.Where(key => !_held.ContainsKey(key))], (now - MaxAge).ToUnixTimeMilliseconds(), cancellationToken);
        foreach (var key in found.Keys)
        {
            _pending.Writer.TryWrite(new Pending(key, null, now.ToUnixTimeMilliseconds()));
        }

        foreach (var key in held)
        {
            if (_held.TryGetValue(key, out var answer))
            {
                found[key] = answer;
            }
        }

        return found;
    }

    /// <summary>
    /// Keeps an answer under its key (as <see cref="KeyOf"/> gives it), written behind with others;
    /// one that comes while twice <see cref="HoldBytes"/> wait to be written is not kept.
    /// </summary>
    public void Add(string key, CachedAnswer answer)
    {
        CheckKey(key);
        ArgumentNullException.ThrowIfNull(answer);
        if (Interlocked.Read(ref _heldBytes) >= 2 * HoldBytes || !_held.TryAdd(key, answer))
        {
            return;
        }

        Interlocked.Add(ref _heldBytes, answer.Body.LongLength);
        Interlocked.Increment(ref _added);
        _pending.Writer.TryWrite(new Pending(key, answer, Time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    /// <summary>What the cache holds now.</summary>
    public abstract Task<AnswerCacheStats> StatsAsync(CancellationToken cancellationToken);

    /// <summary>Removes the answers older than the age limit, then the ones used longest ago until the cache is within its size; returns how many went.</summary>
    public Task<long> PruneAsync(CancellationToken cancellationToken) =>
        WritingAsync(async () =>
        {
            var removed = await RemoveOlderThanAsync((Time.GetUtcNow() - MaxAge).ToUnixTimeMilliseconds(), cancellationToken);
            return removed + await KeepWithinSizeAsync(readSize: true, cancellationToken);
        }, cancellationToken);

    /// <summary>Removes every answer; returns how many there were.</summary>
    public Task<long> ClearAsync(CancellationToken cancellationToken) =>
        WritingAsync(async () =>
        {
            var removed = await RemoveAllAsync(cancellationToken);
            _bytes = 0;
            return removed;
        }, cancellationToken);

    /// <summary>Writes what waits to be kept, then stops writing.</summary>
    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        await _closing.CancelAsync();
        await _writer;
        await DisposeStorageAsync();
        _writing.Dispose();
        _closing.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Prepares <paramref name="cache"/>'s storage, reads its size and starts its writer; disposes of it when that fails.</summary>
    /// <typeparam name="TCache">The backend.</typeparam>
    /// <param name="cache">A cache just made.</param>
    /// <param name="cancellationToken">Stops the opening.</param>
    /// <returns>The cache, ready.</returns>
    protected static async Task<TCache> StartAsync<TCache>(TCache cache, CancellationToken cancellationToken)
        where TCache : AnswerCache
    {
        ArgumentNullException.ThrowIfNull(cache);
        try
        {
            await cache.PrepareAsync(cancellationToken);
            cache._bytes = await cache.SizeAsync(cancellationToken);
            cache._sizeReadAt = cache.Time.GetUtcNow();
            cache._writer = Task.Run(cache.WriteBehindAsync, CancellationToken.None);
            return cache;
        }
        catch
        {
            await cache.DisposeAsync();
            throw;
        }
    }

    /// <summary>Opens the storage and makes its table when it is not there.</summary>
    protected abstract Task PrepareAsync(CancellationToken cancellationToken);

    /// <summary>The answers of <paramref name="keys"/> created at or after <paramref name="oldest"/> (Unix milliseconds), by key.</summary>
    protected abstract Task<Dictionary<string, CachedAnswer>> LookUpAsync(IReadOnlyCollection<string> keys, long oldest, CancellationToken cancellationToken);

    /// <summary>
    /// In one transaction, keeps <paramref name="answers"/> (a key already kept stays as it is) and marks
    /// the answers of <paramref name="used"/> as used at <paramref name="usedAt"/> (Unix milliseconds);
    /// returns the bytes of the answers newly kept.
    /// </summary>
    protected abstract Task<long> WriteAsync(IReadOnlyList<KeptAnswer> answers, IReadOnlyCollection<string> used, long usedAt);

    /// <summary>The bytes of answer bodies the cache holds now, whoever wrote them.</summary>
    protected abstract Task<long> SizeAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Removes the answers used longest ago (of the oldest thousand, at most) until at least
    /// <paramref name="bytes"/> are freed; returns how many went and their bytes. A backend that another
    /// writer is evicting from at that moment may remove none.
    /// </summary>
    protected abstract Task<(long Removed, long Bytes)> RemoveLeastRecentlyUsedAsync(long bytes, CancellationToken cancellationToken);

    /// <summary>How many rows a <c>DELETE … RETURNING bytes</c> returned, and their bytes.</summary>
    /// <param name="reader">The statement's rows.</param>
    /// <param name="cancellationToken">Stops the reading.</param>
    /// <returns>The answers removed and their bytes.</returns>
    protected static async Task<(long Removed, long Bytes)> CountRemovedAsync(DbDataReader reader, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var (removed, bytes) = (0L, 0L);
        while (await reader.ReadAsync(cancellationToken))
        {
            removed++;
            bytes += reader.GetInt64(0);
        }

        return (removed, bytes);
    }

    /// <summary>Removes the answers created before <paramref name="oldest"/> (Unix milliseconds); returns how many went.</summary>
    protected abstract Task<long> RemoveOlderThanAsync(long oldest, CancellationToken cancellationToken);

    /// <summary>Removes every answer; returns how many there were.</summary>
    protected abstract Task<long> RemoveAllAsync(CancellationToken cancellationToken);

    /// <summary>Closes the storage; called once the writer has written what waited.</summary>
    protected abstract ValueTask DisposeStorageAsync();

    /// <summary>An answer waiting to be kept.</summary>
    /// <param name="Key">Its key, as <see cref="KeyOf"/> gives it.</param>
    /// <param name="Answer">The answer.</param>
    /// <param name="At">When it came (Unix milliseconds): its creation and its first use.</param>
    protected readonly record struct KeptAnswer(string Key, CachedAnswer Answer, long At);

    /// <summary>An answer to keep, or (without one) a key whose answer was used.</summary>
    private readonly record struct Pending(string Key, CachedAnswer? Answer, long At);

    private static void CheckKey(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length != KeyLength || key.AsSpan().ContainsAnyExcept(HexDigits))
        {
            throw new ArgumentException($"A cache key is the {KeyLength} lower-case hex digits that KeyOf gives, not \"{key}\".", nameof(key));
        }
    }

    /// <summary>
    /// Waits while answers keep coming and fewer than <see cref="HoldBytes"/> of them are held, until
    /// <see cref="Quiet"/> passes without a new one, <see cref="MostHeld"/> has passed, or the cache closes.
    /// </summary>
    private async Task GatherAsync()
    {
        var started = TimeProvider.System.GetTimestamp();
        long seen;
        do
        {
            seen = Interlocked.Read(ref _added);
            try
            {
                await Task.Delay(Quiet, TimeProvider.System, _closing.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        while (Interlocked.Read(ref _added) != seen && Interlocked.Read(ref _heldBytes) < HoldBytes && TimeProvider.System.GetElapsedTime(started) < MostHeld);
    }

    private async Task WriteBehindAsync()
    {
        var reader = _pending.Reader;
        var answers = new List<KeptAnswer>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        while (await reader.WaitToReadAsync())
        {
            await GatherAsync();
            bool full;
            do
            {
                answers.Clear();
                used.Clear();
                var usedAt = 0L;
                while (answers.Count + used.Count < GroupSize && reader.TryRead(out var pending))
                {
                    if (pending.Answer is { } answer)
                    {
                        answers.Add(new KeptAnswer(pending.Key, answer, pending.At));
                    }
                    else
                    {
                        used.Add(pending.Key);
                        usedAt = Math.Max(usedAt, pending.At);
                    }
                }

                full = answers.Count + used.Count >= GroupSize;
                try
                {
                    await WritingAsync(async () =>
                    {
                        _bytes += await WriteAsync(answers, used, usedAt);
                        return await KeepWithinSizeAsync(readSize: false, CancellationToken.None);
                    }, CancellationToken.None);
                }
                catch (DbException)
                {
                    // A cache that cannot be written only misses: the answers are in the batch's own store.
                }
                finally
                {
                    foreach (var kept in answers)
                    {
                        _held.TryRemove(kept.Key, out _);
                        Interlocked.Add(ref _heldBytes, -kept.Answer.Body.LongLength);
                    }
                }
            }
            while (full);
        }
    }

    /// <summary>
    /// When the cache holds more than its size, drops the answers used longest ago until it holds at
    /// most nine tenths of it. The true size is read again first when asked, when the estimate passes
    /// the cap, or when it was last read <see cref="SizeReading"/> ago or more (others write too).
    /// </summary>
    private async Task<long> KeepWithinSizeAsync(bool readSize, CancellationToken cancellationToken)
    {
        var now = Time.GetUtcNow();
        if (readSize || _bytes > MaxBytes || now - _sizeReadAt >= SizeReading)
        {
            _bytes = await SizeAsync(cancellationToken);
            _sizeReadAt = now;
        }

        long removed = 0;
        var target = MaxBytes * 9 / 10;
        while (_bytes > MaxBytes || (removed > 0 && _bytes > target))
        {
            var (count, bytes) = await RemoveLeastRecentlyUsedAsync(_bytes - target, cancellationToken);
            if (count == 0)
            {
                break;
            }

            removed += count;
            _bytes -= bytes;
        }

        return removed;
    }

    private async Task<long> WritingAsync(Func<Task<long>> write, CancellationToken cancellationToken)
    {
        await _writing.WaitAsync(cancellationToken);
        try
        {
            return await write();
        }
        finally
        {
            _writing.Release();
        }
    }
}
