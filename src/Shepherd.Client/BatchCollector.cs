using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Shepherd.Client;

/// <summary>
/// Turns a stream of single requests from many concurrent callers into batches, so an
/// application written as one call per item gets batch prices without changing its structure:
/// each caller awaits <see cref="AddAsync(string, CancellationToken)"/> and gets its own result.
/// </summary>
/// <remarks>
/// <para>
/// Requests are queued under a collector-made custom id. The pending ones are flushed into a
/// batch when <see cref="FlushSize"/> of them are pending or the oldest has waited
/// <see cref="BatchCollectorOptions.MaxAge"/>, whichever comes first; <see cref="FlushAsync"/>
/// flushes at once. Each batch is created (with an idempotency key made for that flush, so the
/// client's own retries never make a second batch), waited for, and its results are streamed and
/// handed to their callers by custom id. When the whole batch fails (refused, not ended in time,
/// unreachable), every caller of it fails with a <see cref="BatchCollectorException"/> that
/// carries the cause; a caller whose result is missing fails alone. A request the provider failed
/// is a result, not an exception: look at <see cref="BatchResult.Status"/>.
/// </para>
/// <para>
/// It is bounded: at most <see cref="BatchCollectorOptions.MaxConcurrentBatches"/> batches are in
/// flight. While that many are, due flushes wait for one to end, requests keep being queued until
/// <see cref="FlushSize"/> are pending, and further adds wait, in order, for room (their tasks are
/// simply not complete yet). A caller's cancellation only abandons its own wait: a queued request
/// stays and goes in its batch; one still waiting for room is withdrawn, as it was never queued.
/// </para>
/// <para>
/// With <see cref="BatchCollectorOptions.TargetLatency"/> the flush size adapts to keep the time
/// from a flush to its results near the target; see <see cref="FlushSize"/>. All timing uses the
/// client's <see cref="ShepherdClientOptions.TimeProvider"/>. Thread-safe.
/// </para>
/// </remarks>
public sealed partial class BatchCollector : IAsyncDisposable
{
    private const double Shrink = 0.75;
    private const double Grow = 1.25;

    private readonly ShepherdClient _client;
    private readonly BatchCollectorOptions _options;
    private readonly TimeProvider _time;
    private readonly string _instance;
    // An object, not System.Threading.Lock: the client runs on .NET 8 too.
    private readonly object _gate = new();
    private readonly Queue<Entry> _pending = new();
    private readonly LinkedList<Entry> _waiting = new();
    private readonly List<FlushWaiter> _flushWaiters = [];
    private readonly ITimer _timer;
    private readonly CancellationTokenSource _abort = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private DateTimeOffset? _timerDue;
    private bool _timerDisposed;
    private long _sequence;
    private long _flushThrough;
    private long _flushes;
    private int _inFlight;
    private double _size;
    private long _epoch;
    private int _keyChecked;
    private ShepherdApiException? _keyRefused;
    private bool _disposing;

    /// <summary>Creates a collector sending its batches through <paramref name="client"/> (not disposed with it).</summary>
    public BatchCollector(ShepherdClient client, BatchCollectorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _options = (options ?? new BatchCollectorOptions()).Validated();
        _time = client.Options.TimeProvider;
        _instance = Convert.ToHexString(RandomNumberGenerator.GetBytes(6)).ToLowerInvariant();
        _size = _options.MaxBatchSize;
        _timer = _time.CreateTimer(static state => ((BatchCollector)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>
    /// The number of pending requests that makes a batch now. It is <see cref="BatchCollectorOptions.MaxBatchSize"/>
    /// unless <see cref="BatchCollectorOptions.TargetLatency"/> is set; then, after each batch, it is
    /// multiplied by 0.75 when the batch's time to result (from its flush until its results were
    /// handed out) exceeded the target, by 1.25 when it was under half the target, and kept
    /// otherwise, always between <see cref="BatchCollectorOptions.MinBatchSize"/> and
    /// <see cref="BatchCollectorOptions.MaxBatchSize"/>; it starts at the latter. A batch that did not
    /// end within <see cref="BatchCollectorOptions.WaitTimeout"/> counts as too slow; one that failed
    /// otherwise does not count. Only a batch flushed after the last change may change it again, so
    /// batches in flight together count once, for the size they were made with.
    /// </summary>
    public int FlushSize
    {
        get
        {
            lock (_gate)
            {
                return FlushSizeLocked;
            }
        }
    }

    /// <summary>Requests added and not yet in a batch, including those waiting for room.</summary>
    public int PendingCount
    {
        get
        {
            lock (_gate)
            {
                return _pending.Count + _waiting.Count;
            }
        }
    }

    /// <summary>Batches created or being created whose results have not all been handed out yet.</summary>
    public int BatchesInFlight
    {
        get
        {
            lock (_gate)
            {
                return _inFlight;
            }
        }
    }

    /// <summary>Adds waiting for room (see <see cref="BatchCollectorOptions.MaxConcurrentBatches"/>).</summary>
    internal int WaitingCount
    {
        get
        {
            lock (_gate)
            {
                return _waiting.Count;
            }
        }
    }

    private int FlushSizeLocked => (int)Math.Round(_size);

    /// <summary>
    /// Queues a one-prompt request and returns its result once its batch has ended. Cancelling
    /// <paramref name="cancellationToken"/> abandons the wait only (see the remarks of <see cref="BatchCollector"/>).
    /// </summary>
    /// <exception cref="BatchCollectorException">(From the task) its batch failed as a whole, or had no result for it.</exception>
    /// <exception cref="ObjectDisposedException">The collector is being disposed.</exception>
    public Task<BatchResult> AddAsync(string prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Add(prompt, null, cancellationToken);
    }

    /// <summary>
    /// Queues a request with its full body, as the endpoint expects it (a copy is taken), and
    /// returns its result once its batch has ended. Cancelling <paramref name="cancellationToken"/>
    /// abandons the wait only (see the remarks of <see cref="BatchCollector"/>).
    /// </summary>
    /// <exception cref="BatchCollectorException">(From the task) its batch failed as a whole, or had no result for it.</exception>
    /// <exception cref="ObjectDisposedException">The collector is being disposed.</exception>
    public Task<BatchResult> AddAsync(JsonObject body, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        return Add(null, (JsonObject)body.DeepClone(), cancellationToken);
    }

    /// <summary>
    /// Flushes every request added so far, whatever their number and age, in batches of at most
    /// <see cref="FlushSize"/>. The task completes once all of them are in batches that have
    /// started, which waits for free slots while <see cref="BatchCollectorOptions.MaxConcurrentBatches"/>
    /// are in flight; the callers' own tasks complete when their batches end. Cancelling
    /// <paramref name="cancellationToken"/> stops the waiting, not the flush.
    /// </summary>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_disposing)
            {
                // Disposal flushes everything already.
                return Task.CompletedTask;
            }

            _flushThrough = _sequence;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _flushWaiters.Add(new FlushWaiter(_sequence, done));
            PumpLocked();
            return done.Task.WaitAsync(cancellationToken);
        }
    }

    /// <summary>
    /// Refuses further requests, flushes the pending ones and waits for every batch in flight to
    /// hand out its results; with <see cref="BatchCollectorOptions.DisposeTimeout"/>, no longer than
    /// that, after which the callers still waiting fail (their batches go on on the server).
    /// The client is not disposed.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        bool first;
        lock (_gate)
        {
            first = !_disposing;
            if (first)
            {
                _disposing = true;
                _flushThrough = long.MaxValue;
                PumpLocked();
            }
        }

        if (!first)
        {
            await _drained.Task;
            return;
        }

        if (_options.DisposeTimeout is { } bound)
        {
            try
            {
                await _drained.Task.WaitAsync(bound, _time);
            }
            catch (TimeoutException)
            {
                await _abort.CancelAsync();
                lock (_gate)
                {
                    PumpLocked();
                }

                await _drained.Task;
            }
        }
        else
        {
            await _drained.Task;
        }

        lock (_gate)
        {
            _timerDisposed = true;
            _timer.Dispose();
        }

        _abort.Dispose();
    }

    /// <summary>The flush size after a batch of time to result <paramref name="observed"/>; see <see cref="FlushSize"/>.</summary>
    internal static double Adjust(double size, TimeSpan observed, TimeSpan target, int min, int max)
    {
        var next = observed > target ? size * Shrink
            : observed < target / 2 ? size * Grow
            : size;
        return Math.Clamp(next, min, max);
    }

    private Task<BatchResult> Add(string? prompt, JsonObject? body, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<BatchResult>(cancellationToken);
        }

        if (Interlocked.Exchange(ref _keyChecked, 1) == 0)
        {
            _ = CheckKeyAsync();
        }

        Entry entry;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposing, this);
            if (_keyRefused is { } refused)
            {
                return Task.FromException<BatchResult>(Refusal(refused));
            }

            var sequence = ++_sequence;
            var customId = $"c{_instance}-{sequence}";
            var item = prompt is not null ? BatchItem.FromPrompt(customId, prompt) : BatchItem.FromBody(customId, body!);
            entry = new Entry(item, sequence, _time.GetUtcNow());
            entry.Node = _waiting.AddLast(entry);
            PumpLocked();
        }

        if (!cancellationToken.CanBeCanceled)
        {
            return entry.Result.Task;
        }

        // The caller's task is the entry's own: cancelling ends it at once, and a result coming
        // later is dropped. The registration lasts as long as the request.
        var registration = cancellationToken.Register(static (state, token) =>
        {
            var (collector, cancelled) = ((BatchCollector, Entry))state!;
            collector.Withdraw(cancelled, token);
        }, (this, entry));
        _ = entry.Result.Task.ContinueWith(
            static (_, state) => ((CancellationTokenRegistration)state!).Unregister(),
            registration,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
        return entry.Result.Task;
    }

    private void Withdraw(Entry entry, CancellationToken token)
    {
        lock (_gate)
        {
            // Queued already, it stays in its batch; still waiting for room, it was never queued.
            if (entry.Node is not null)
            {
                _waiting.Remove(entry.Node);
                entry.Node = null;
                PumpLocked();
            }
        }

        entry.Result.TrySetCanceled(token);
    }

    private void OnTimer()
    {
        lock (_gate)
        {
            _timerDue = null;
            PumpLocked();
        }
    }

    /// <summary>Admits waiting requests, starts every batch that is due and has a slot, and re-arms the age timer.</summary>
    private void PumpLocked()
    {
        if (_abort.IsCancellationRequested)
        {
            FailUnsentLocked();
        }

        var now = _time.GetUtcNow();
        while (true)
        {
            while (_waiting.First is { } node && _pending.Count < FlushSizeLocked)
            {
                _waiting.RemoveFirst();
                node.Value.Node = null;
                _pending.Enqueue(node.Value);
            }

            if (_inFlight >= _options.MaxConcurrentBatches || _pending.Count == 0 || !DueLocked(now))
            {
                break;
            }

            StartBatchLocked();
        }

        var oldest = _pending.Count > 0 ? _pending.Peek().Sequence : _waiting.First?.Value.Sequence ?? long.MaxValue;
        for (var i = _flushWaiters.Count - 1; i >= 0; i--)
        {
            if (_flushWaiters[i].Through < oldest)
            {
                _flushWaiters[i].Done.TrySetResult();
                _flushWaiters.RemoveAt(i);
            }
        }

        ArmTimerLocked(now);
        if (_disposing && _inFlight == 0 && _pending.Count == 0 && _waiting.Count == 0)
        {
            _drained.TrySetResult();
        }
    }

    private bool DueLocked(DateTimeOffset now)
    {
        var oldest = _pending.Peek();
        return _pending.Count >= FlushSizeLocked || oldest.Sequence <= _flushThrough || now - oldest.AddedAt >= _options.MaxAge;
    }

    private void StartBatchLocked()
    {
        var size = Math.Min(FlushSizeLocked, _pending.Count);
        var entries = new List<Entry>(size);
        while (entries.Count < size)
        {
            entries.Add(_pending.Dequeue());
        }

        _inFlight++;
        var flush = new Flush(++_flushes, entries, _epoch, _time.GetTimestamp());
        _ = Task.Run(() => RunAsync(flush));
    }

    private void ArmTimerLocked(DateTimeOffset now)
    {
        // Only while a batch could start: a slot freeing up pumps again, so a full house needs no timer.
        DateTimeOffset? due = _pending.Count > 0 && _inFlight < _options.MaxConcurrentBatches ? _pending.Peek().AddedAt + _options.MaxAge : null;
        if (due == _timerDue || _timerDisposed)
        {
            return;
        }

        _timerDue = due;
        var wait = due is { } at ? at - now : Timeout.InfiniteTimeSpan;
        _timer.Change(due is null || wait > TimeSpan.Zero ? wait : TimeSpan.FromMilliseconds(1), Timeout.InfiniteTimeSpan);
    }

    private void FailUnsentLocked() => FailUnsentLocked(() => new BatchCollectorException("The collector was disposed before the request was sent.", null, null));

    private void FailUnsentLocked(Func<Exception> why)
    {
        foreach (var entry in _pending)
        {
            entry.Result.TrySetException(why());
        }

        _pending.Clear();
        foreach (var entry in _waiting)
        {
            entry.Node = null;
            entry.Result.TrySetException(why());
        }

        _waiting.Clear();
    }

    private sealed class Entry(BatchItem item, long sequence, DateTimeOffset addedAt)
    {
        public BatchItem Item { get; } = item;

        public long Sequence { get; } = sequence;

        public DateTimeOffset AddedAt { get; } = addedAt;

        public TaskCompletionSource<BatchResult> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Its place among the adds waiting for room; null once queued (or withdrawn).</summary>
        public LinkedListNode<Entry>? Node { get; set; }
    }

    private sealed record Flush(long Number, List<Entry> Entries, long Epoch, long Started);

    private sealed record FlushWaiter(long Through, TaskCompletionSource Done);
}
