using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Server.Batches;
using Shepherd.Server.Hosting;
using Shepherd.Server.Http;

namespace Shepherd.Server.Gateway;

/// <summary>
/// Calls that can wait. Each is written to the store at once, into a collection: a batch of
/// the realtime door (<see cref="BatchDoor.Gateway"/>) of the caller's tenant, url and model, still
/// being filled (its items staged), which other calls of the same kind join. A collection is
/// closed (its batch starts, in <see cref="BatchMode.Auto"/>, with its first call's deadline) when
/// it holds <see cref="ServerOptions.CallCollectSize"/> calls or has waited a tenth of the time its
/// deadline leaves (at most <see cref="ServerOptions.CallCollectAge"/>): the planner then sends it in
/// a provider's batch job, on the flex tier or realtime, whichever is cheapest and still in time.
/// The caller's request is answered when its answer is in; with <c>Prefer: respond-async</c>, or
/// once its <c>wait</c> has passed, or when the server stops, it gets 202 and the call's location
/// instead. A restart loses nothing: collections left open are closed as they are.
/// </summary>
internal sealed partial class DeadlineCalls(IBatchStore store, BatchService batches, ServerOptions options, TimeProvider time, IHostApplicationLifetime lifetime, ILogger<DeadlineCalls> logger)
{
    private const string IdPrefix = "call_";
    private const string BatchPrefix = "batch_";

    private readonly Lock _lock = new();
    private readonly Dictionary<(string? Owner, string Url, string Model), Collection> _open = [];

    /// <summary>Takes a call that can wait, stores it, and answers when its answer is in (or with its location).</summary>
    public async Task CallAsync(HttpContext context, Caller caller, GatewayRequest request, CallWait wait)
    {
        if (request.Stream)
        {
            throw ApiException.BadRequest("A call that can wait is not streamed (it may go out in a provider's batch job): leave \"stream\" out, or drop the deadline.", "stream");
        }

        var id = await AddAsync(caller, request, wait.Deadline);
        if (wait.RespondAsync)
        {
            context.Response.Headers["Preference-Applied"] = "respond-async";
            await AcceptedAsync(context, id);
            return;
        }

        // A caller that asked for no 202 (an SDK cannot read one) gets an error it can, naming the call, if the answer is not in by its wait.
        await AnswerAsync(context, caller, id, wait.Wait, accepts202: wait.AsksToWait);
    }

    /// <summary>
    /// <c>GET /v1/calls/{id}</c>: the answer of a call that could wait, as the provider gave it,
    /// once it is in; 202 with <c>Retry-After</c> until then (held up to <c>Prefer: wait=N</c>).
    /// </summary>
    public async Task GetAsync(HttpContext context, string id)
    {
        var wait = WaitHeaders.Read(context.Request, time.GetUtcNow())?.Wait ?? TimeSpan.Zero;
        await AnswerAsync(context, Caller.Of(context), id, wait < BatchWatch.MaxWait ? wait : BatchWatch.MaxWait, accepts202: true);
    }

    /// <summary>Closes what a stopped server left open: its calls are in the store, and their batches start as they are.</summary>
    public async Task RecoverAsync(CancellationToken cancellationToken)
    {
        foreach (var batch in await store.ListValidatingBatchesAsync(cancellationToken))
        {
            if (batch.Door == BatchDoor.Gateway)
            {
                var count = 0L;
                await foreach (var _ in store.ReadRequestsAsync(batch.Id, [ItemState.Staged], cancellationToken))
                {
                    count++;
                }

                await StartAsync(batch.Id, batch.Endpoint ?? BatchEndpoints.ChatCompletions, count, cancellationToken);
            }
        }
    }

    /// <summary>Stores a call in its collection (not cancellable: once written it is the caller's) and returns its id.</summary>
    private async Task<string> AddAsync(Caller caller, GatewayRequest request, DateTimeOffset deadline)
    {
        var key = (caller.Owner, request.Url, request.Model);
        Collection collection;
        long line;
        lock (_lock)
        {
            if (!_open.TryGetValue(key, out var open) || open.Closing || deadline < open.Deadline)
            {
                // A call due before the open collection's deadline starts its own: a batch keeps the deadline of its first call.
                if (open is { Closing: false })
                {
                    open.Closing = true;
                    _ = CloseSoonAsync(open, TimeSpan.Zero);
                }

                // Due a little before its first call: calls of the same moment (whose deadlines differ by
                // the milliseconds between them) join it, and each is still answered by its own deadline.
                var now = time.GetUtcNow();
                var slack = TimeSpan.FromTicks(Math.Clamp((deadline - now).Ticks / 100, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
                _open[key] = open = new Collection(key, BatchIds.NewBatchId(), deadline - slack, now);
                var age = TimeSpan.FromTicks(Math.Min(options.CallCollectAge.Ticks, (deadline - open.Started).Ticks / 10));
                _ = CloseSoonAsync(open, age);
            }

            collection = open;
            line = ++open.Count;
            if (open.Count >= options.CallCollectSize)
            {
                open.Closing = true;
                _ = CloseSoonAsync(open, TimeSpan.Zero);
            }
        }

        var window = collection.Deadline - time.GetUtcNow();
        var batch = new NewBatch(collection.BatchId, "gateway", request.Url, BatchPriority.Normal, window)
        {
            Owner = caller.Owner,
            Door = BatchDoor.Gateway,
            Model = request.Model,
            Mode = BatchMode.Auto,
            CompletionWindowText = string.Create(CultureInfo.InvariantCulture, $"{Math.Max(1, (long)window.TotalSeconds)}s"),
        };
        try
        {
            await collection.Created(() => store.CreateBatchAsync(batch, CancellationToken.None));
        }
        catch (StoreException)
        {
            // A collection whose batch could not be made takes no more calls; the next call starts another.
            Close(collection);
            throw;
        }

        var id = IdOf(collection.BatchId, line);
        await collection.Write(() => store.AddItemsAsync(collection.BatchId, [new ImportItem(line, id, request.Model, request.Body)], CancellationToken.None));
        return id;
    }

    /// <summary>Closes <paramref name="collection"/> after <paramref name="after"/>: once every call it took is written, its batch starts.</summary>
    private async Task CloseSoonAsync(Collection collection, TimeSpan after)
    {
        try
        {
            if (after > TimeSpan.Zero)
            {
                await Task.Delay(after, time);
            }

            var count = Close(collection);

            await collection.Written();
            await StartAsync(collection.BatchId, collection.Url, count, CancellationToken.None);
        }
#pragma warning disable CA1031 // A collection that cannot start stays in the store, to be started at the next restart; the failure is logged.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogCloseFailed(ex, collection.BatchId);
        }
    }

    /// <summary>Takes <paramref name="collection"/> out of those open, so no more calls join it; returns how many it took.</summary>
    private long Close(Collection collection)
    {
        lock (_lock)
        {
            collection.Closing = true;
            if (_open.TryGetValue(collection.Key, out var current) && current == collection)
            {
                _open.Remove(collection.Key);
            }

            return collection.Count;
        }
    }

    private async Task StartAsync(string batchId, string url, long count, CancellationToken cancellationToken)
    {
        await store.AcceptBatchAsync(batchId, new AcceptedInput(url == BatchEndpoints.Messages ? InputFormat.Anthropic : InputFormat.OpenAI, url, count, null, 0), cancellationToken);
        batches.NotifyBatchesChanged();
    }

    /// <summary>Answers a call from the store: its answer once it is in (waiting up to <paramref name="wait"/>), else 202 with its location.</summary>
    /// <remarks>
    /// A call still open when the wait ends is a 202 with its location where the caller takes one
    /// (<paramref name="accepts202"/>); otherwise a 503 <c>server_stopping</c> while the server stops,
    /// or a 504, each naming the call and its location.
    /// </remarks>
    private async Task AnswerAsync(HttpContext context, Caller caller, string id, TimeSpan wait, bool accepts202)
    {
        var (batchId, _) = Parse(id);
        var batch = await store.GetBatchAsync(batchId, context.RequestAborted);
        if (batch is null || batch.Door != BatchDoor.Gateway || !caller.Sees(batch.Owner))
        {
            throw ApiException.NotFound($"There is no call '{id}'.", "id");
        }

        var until = time.GetUtcNow() + wait;
        var result = await store.GetResultAsync(batchId, id, context.RequestAborted);
        while (result is not { Result: not null } && time.GetUtcNow() < until && !batch.HasEnded && !lifetime.ApplicationStopping.IsCancellationRequested)
        {
            // Each look is held until the batch ends, or for a second or two: the call's own answer may be in before the rest of its batch.
            var left = until - time.GetUtcNow();
            batch = await batches.UntilEndedAsync(batch, left < AnswerLook ? left : AnswerLook, context.RequestAborted);
            result = await store.GetResultAsync(batchId, id, context.RequestAborted);
        }

        if (result is null)
        {
            throw ApiException.NotFound($"There is no call '{id}'.", "id");
        }

        context.Response.Headers["x-shepherd-call-id"] = id;
        var location = "/v1/calls/" + id;
        var ended = result.State is ItemState.Succeeded or ItemState.Failed or ItemState.Cancelled or ItemState.Expired;
        if (!ended && accepts202)
        {
            await AcceptedAsync(context, id);
            return;
        }

        if (!ended)
        {
            context.Response.Headers.Location = location;
        }

        await GatewayApi.WriteAsync(context, result.Result is { StatusCode: { } status } answer
            ? new RealtimeAnswer { StatusCode = status, Body = answer.Body ?? [], Headers = answer.ErrorCode == FailureCodes.InvalidOutput ? Unfit : JsonType }
            : new RealtimeAnswer
            {
                Error = result.State switch
                {
                    ItemState.Cancelled => new RealtimeError(StatusCodes.Status409Conflict, "call_cancelled", $"The call {id} was cancelled before it was sent."),
                    ItemState.Expired => new RealtimeError(StatusCodes.Status504GatewayTimeout, "deadline_exceeded", $"The call {id}'s deadline passed before it could be sent."),
                    ItemState.Failed => new RealtimeError(StatusCodes.Status502BadGateway, result.Result?.ErrorCode ?? "upstream_error", $"The call {id} failed: {result.Result?.ErrorMessage ?? "no answer came"}."),
                    _ when lifetime.ApplicationStopping.IsCancellationRequested => new RealtimeError(StatusCodes.Status503ServiceUnavailable, "server_stopping",
                        $"Shepherd is stopping; the call {id} is kept, and its answer can be fetched from {location} once a server is up.", TimeSpan.FromSeconds(5)),
                    _ => new RealtimeError(StatusCodes.Status504GatewayTimeout, "call_pending",
                        $"The call {id} is kept but was not answered within the wait; its answer can be fetched from {location}."),
                },
            });
    }

    /// <summary>How often a held call looks for its own answer while its batch has not ended.</summary>
    private static readonly TimeSpan AnswerLook = TimeSpan.FromSeconds(2);

    private static readonly KeyValuePair<string, string>[] JsonType = [new("Content-Type", "application/json")];

    /// <summary>
    /// The last answer of a call no answer of which fitted its schema: given as the provider gave it
    /// (a caller's SDK would have had it the same way without Shepherd), marked so.
    /// </summary>
    private static readonly KeyValuePair<string, string>[] Unfit = [.. JsonType, new("x-shepherd-output", FailureCodes.InvalidOutput)];

    /// <summary>202: the call is stored; its answer will be at <c>/v1/calls/{id}</c>.</summary>
    private static Task AcceptedAsync(HttpContext context, string id)
    {
        var location = "/v1/calls/" + id;
        context.Response.Headers.Location = location;
        context.Response.Headers.RetryAfter = "1";
        context.Response.Headers["x-shepherd-call-id"] = id;
        return new JsonBody(json =>
        {
            json.WriteStartObject();
            json.WriteString("id", id);
            json.WriteString("object", "shepherd.call");
            json.WriteString("status", "pending");
            json.WriteString("url", location);
            json.WriteEndObject();
        }, StatusCodes.Status202Accepted).ExecuteAsync(context);
    }

    private static string IdOf(string batchId, long line) =>
        string.Create(CultureInfo.InvariantCulture, $"{IdPrefix}{batchId[BatchPrefix.Length..]}_{line}");

    private static (string BatchId, long Line) Parse(string id)
    {
        var last = id.LastIndexOf('_');
        return id.StartsWith(IdPrefix, StringComparison.Ordinal) && last > IdPrefix.Length
            && long.TryParse(id.AsSpan(last + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var line)
            ? (BatchPrefix + id[IdPrefix.Length..last], line)
            : throw ApiException.NotFound($"There is no call '{id}'.", "id");
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "The collection of calls {BatchId} could not be started; it starts at the next restart")]
    private partial void LogCloseFailed(Exception exception, string batchId);

    /// <summary>An open collection: its batch, created by the first call, and the writes of the calls it took.</summary>
    private sealed class Collection((string? Owner, string Url, string Model) key, string batchId, DateTimeOffset deadline, DateTimeOffset started)
    {
        private readonly Lock _writes = new();
        private readonly TaskCompletionSource _allWritten = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Task? _created;
        private long _done;

        /// <summary>The tenant, url and model whose calls it collects.</summary>
        public (string? Owner, string Url, string Model) Key { get; } = key;

        public string BatchId { get; } = batchId;

        public string Url => Key.Url;

        public DateTimeOffset Deadline { get; } = deadline;

        public DateTimeOffset Started { get; } = started;

        public long Count { get; set; }

        public bool Closing { get; set; }

        /// <summary>Creates the batch once, for the first call; every call waits for it.</summary>
        public Task Created(Func<Task<string>> create)
        {
            lock (_writes)
            {
                return _created ??= create();
            }
        }

        /// <summary>Writes a call's item; the collection starts only once the item of every call it took is written.</summary>
        public async Task Write(Func<Task> write)
        {
            try
            {
                await write();
            }
            finally
            {
                lock (_writes)
                {
                    if (++_done == Count && Closing)
                    {
                        _allWritten.TrySetResult();
                    }
                }
            }
        }

        /// <summary>Completes once the item of every call the collection took is written (or failed); call only once it is closing.</summary>
        public Task Written()
        {
            lock (_writes)
            {
                if (_done >= Count)
                {
                    _allWritten.TrySetResult();
                }

                return _allWritten.Task;
            }
        }
    }
}

/// <summary>What a call says about waiting: its deadline, how long its caller waits, and whether it wants 202 at once.</summary>
/// <param name="Deadline">When its answer is due.</param>
/// <param name="Wait">How long the caller's request is held for the answer.</param>
/// <param name="RespondAsync">True for <c>Prefer: respond-async</c>: 202 with the call's location at once.</param>
/// <param name="AsksToWait">True when the caller gave <c>Prefer: wait=N</c>: it knows to take a 202 when the wait passes (RFC 7240).</param>
internal sealed record CallWait(DateTimeOffset Deadline, TimeSpan Wait, bool RespondAsync, bool AsksToWait)
{
    /// <summary>A call due sooner than this is not stored to wait: no batch could be quicker than sending it now, so it goes as a realtime call with its deadline for a timeout.</summary>
    public static readonly TimeSpan Shortest = TimeSpan.FromMinutes(1);

    /// <summary>True when the call goes to the planner: it asks for a 202, or its deadline leaves time for a batch.</summary>
    public bool CanWait(DateTimeOffset now) => RespondAsync || Deadline - now >= Shortest;
}

/// <summary>Reads <c>x-shepherd-deadline</c> and <c>Prefer</c> (RFC 7240: <c>wait=N</c>, <c>respond-async</c>).</summary>
internal static class WaitHeaders
{
    /// <summary>The header that gives a call a deadline: a duration such as <c>10m</c>, <c>2h</c>.</summary>
    public const string Deadline = "x-shepherd-deadline";

    /// <summary>A deadline call given only <c>Prefer: respond-async</c> is due in a day, as a batch.</summary>
    private static readonly TimeSpan DefaultDeadline = TimeSpan.FromHours(24);

    /// <summary>The call's wait, or null for a call that cannot wait.</summary>
    public static CallWait? Read(HttpRequest request, DateTimeOffset now)
    {
        var window = Fields.Window(request.Headers[Deadline].ToString() is { Length: > 0 } text ? text : null, Deadline);
        TimeSpan? wait = null;
        var respondAsync = false;
        foreach (var preference in request.Headers["Prefer"].SelectMany(value => (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)))
        {
            if (preference.Equals("respond-async", StringComparison.OrdinalIgnoreCase))
            {
                respondAsync = true;
            }
            else if (preference.StartsWith("wait=", StringComparison.OrdinalIgnoreCase))
            {
                wait = int.TryParse(preference.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds)
                    ? TimeSpan.FromSeconds(seconds)
                    : throw ApiException.BadRequest($"Prefer: {preference} is not a wait in whole seconds, such as wait=600.", "Prefer");
            }
        }

        if (window is null && wait is null && !respondAsync)
        {
            return null;
        }

        var deadline = window ?? wait ?? DefaultDeadline;
        return new CallWait(now + deadline, respondAsync ? TimeSpan.Zero : wait ?? deadline, respondAsync, wait is not null && wait < deadline);
    }
}
