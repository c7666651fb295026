using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Pricing;

/// <summary>
/// Prices a batch input before it is sent. The input (OpenAI or Anthropic lines) is streamed
/// line by line, holding one line and one running total per model, so memory stays flat for an
/// input of any size. Each request's prompt is tokenized as the dispatcher counts it; its output
/// is the limit it names (<c>max_tokens</c> and its kin: an upper bound), or, where it names none,
/// an assumed share of its prompt (<see cref="EstimateOptions.AssumedOutputRatio"/>, at most
/// <see cref="EstimateOptions.MaxAssumedOutputTokens"/>), and none for embeddings. Each model is
/// priced realtime and at its provider's batch discount; a model without a price costs 0 and is
/// flagged, never guessed. The time is what the lanes' limits imply:
/// <c>max(requests / rpm, (prompt + output tokens) / tpm)</c> per model, the models side by side.
/// Lines that are not valid requests are reported with their line numbers, as a batch would
/// reject them, and not priced.
/// </summary>
public sealed class BatchEstimator
{
    /// <summary>How many valid requests are looked up in the answer cache at once.</summary>
    private const int CountedChunk = 1000;

    private readonly PriceTable _prices;
    private readonly TokenEstimator _tokens;

    /// <summary>Creates an estimator that prices with <paramref name="prices"/> and counts tokens with <paramref name="tokens"/>.</summary>
    public BatchEstimator(PriceTable prices, TokenEstimator tokens)
    {
        ArgumentNullException.ThrowIfNull(prices);
        ArgumentNullException.ThrowIfNull(tokens);
        _prices = prices;
        _tokens = tokens;
    }

    /// <summary>Reads <paramref name="input"/> to its end and prices it.</summary>
    public async Task<BatchEstimate> EstimateAsync(Stream input, EstimateOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(options);
        var settings = options.Validated();
        using var reader = new JsonlLineReader(input, settings.MaxLineBytes);
        var models = new Dictionary<string, Tally>(StringComparer.Ordinal);
        var errors = new InputErrorList(settings.MaxErrors);
        (InputFormat Format, string Url, long Line)? first = null;
        var ids = new Dictionary<UInt128, long>();
        // Valid requests wait in chunks for the cache to be asked about them all at once; then each is tallied, or counted as cached.
        var counted = new List<Counted>(CountedChunk);
        var cached = (Requests: 0L, Nanos: 0L);

        LineKind kind;
        while ((kind = await reader.ReadAsync(cancellationToken).ConfigureAwait(false)) != LineKind.End)
        {
            var line = reader.LineNumber;
            if (kind == LineKind.TooLong)
            {
                errors.Add(new InputError(InputErrorCodes.LineTooLong, $"the line is longer than {settings.MaxLineBytes} bytes", line));
                continue;
            }

            if (BatchImporter.IsBlank(reader.Current.Span))
            {
                continue;
            }

            if (InputLineParser.TryParse(reader.Current, out var parsed) is { } problem)
            {
                errors.Add(new InputError(problem.Code, problem.Message, line));
                continue;
            }

            first ??= (parsed.Format, settings.Endpoint ?? parsed.Url, line);
            if (BatchImporter.Mismatch(parsed, first.Value, settings.Endpoint is not null) is { } mismatch)
            {
                errors.Add(mismatch with { Line = line });
                continue;
            }

            // The custom ids seen so far, by a 128-bit digest: exact in practice, and flat in memory
            // next to the ids themselves (a million ids take about 40 MB).
            var id = IdDigest(parsed.CustomId);
            if (ids.TryGetValue(id, out var firstUse))
            {
                errors.Add(InputError.Duplicate(parsed.CustomId, firstUse, line));
                continue;
            }

            ids.Add(id, line);

            var model = settings.Model ?? parsed.Model;
            var (prompt, _) = _tokens.Estimate(model, parsed.Body.Span);
            if (_prices.Find(parsed.Model)?.ContextTokens is { } window && ContextWindows.Problem(parsed.Model, prompt, window, line) is { } tooLong)
            {
                errors.Add(tooLong);
                continue;
            }

            var key = settings.Cache is null || !CacheKeys.Uses(settings.CacheUse, parsed.Body.Span) ? null
                : AnswerCache.KeyOf(parsed.Format == InputFormat.Anthropic ? UpstreamKind.Anthropic : UpstreamKind.OpenAI, settings.Tenant, parsed.Url, parsed.Body.Span);
            counted.Add(new Counted(model, prompt, parsed.Url == BatchEndpoints.Embeddings, parsed.MaxOutputTokens, key));
            if (counted.Count == CountedChunk)
            {
                cached = await TallyAsync(counted, models, cached, settings, cancellationToken).ConfigureAwait(false);
            }
        }

        cached = await TallyAsync(counted, models, cached, settings, cancellationToken).ConfigureAwait(false);
        if (first is null && errors.IsEmpty)
        {
            errors.Add(new InputError(InputErrorCodes.EmptyFile, "the input holds no request", null));
        }

        var (listed, more) = errors.Finish();
        return Summarize(models, listed, more, settings, first?.Url) with { Cached = cached.Requests, CachedUsd = Cost.ToUsd(cached.Nanos) };
    }

    /// <summary>Tallies the requests <paramref name="counted"/> holds by model, less those the cache answers (added to <paramref name="cached"/>), and empties it.</summary>
    private async Task<(long Requests, long Nanos)> TallyAsync(List<Counted> counted, Dictionary<string, Tally> models, (long Requests, long Nanos) cached, EstimateOptions settings, CancellationToken cancellationToken)
    {
        var found = settings.Cache is { } cache
            ? await CacheKeys.FindAsync(cache, Enumerable.Range(0, counted.Count).Where(i => counted[i].Key is not null).ToDictionary(i => (long)i, i => counted[i].Key!), cancellationToken).ConfigureAwait(false)
            : new Dictionary<long, CachedAnswer>();
        for (var i = 0; i < counted.Count; i++)
        {
            var request = counted[i];
            if (found.TryGetValue(i, out var answer))
            {
                cached = (cached.Requests + 1, cached.Nanos + _prices.Price(request.Model, answer.InputTokens, answer.OutputTokens).Nanos);
                continue;
            }

            if (!models.TryGetValue(request.Model, out var tally))
            {
                tally = new Tally();
                models.Add(request.Model, tally);
            }

            tally.Add(request, settings);
        }

        counted.Clear();
        return cached;
    }

    /// <summary>
    /// The limits of <paramref name="model"/>'s lanes on <paramref name="upstreams"/>: the sum
    /// over the upstreams that serve it, each with its own lane; a limit that a serving upstream
    /// leaves unset is unknown (null), as is every limit of a model no upstream serves.
    /// </summary>
    public static (long? RequestsPerMinute, long? TokensPerMinute) LimitsOf(IEnumerable<UpstreamOptions> upstreams, string model)
    {
        ArgumentNullException.ThrowIfNull(upstreams);
        ArgumentNullException.ThrowIfNull(model);
        long? rpm = 0, tpm = 0;
        var serving = 0;
        foreach (var upstream in upstreams.Where(u => u.Serves(model)))
        {
            serving++;
            var limits = upstream.LimitsFor(model);
            rpm += limits.RequestsPerMinute;
            tpm += limits.TokensPerMinute;
        }

        return serving == 0 ? (null, null) : (rpm, tpm);
    }

    private BatchEstimate Summarize(Dictionary<string, Tally> models, IReadOnlyList<InputError> errors, long moreErrors, EstimateOptions settings, string? endpoint)
    {
        var estimates = new List<ModelEstimate>(models.Count);
        foreach (var (model, tally) in models.OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            var price = _prices.Find(model);
            var (upstreamRpm, upstreamTpm) = LimitsOf(settings.Upstreams, model);
            var rpm = settings.RequestsPerMinute ?? upstreamRpm;
            var tpm = settings.TokensPerMinute ?? upstreamTpm;
            double? minutes = null;
            if (rpm is { } requestsPerMinute)
            {
                minutes = (double)tally.Requests / requestsPerMinute;
            }

            if (tpm is { } tokensPerMinute)
            {
                // As a lane counts a request: its prompt plus its output allowance.
                minutes = Math.Max(minutes ?? 0, (double)(tally.PromptTokens + tally.OutputTokens) / tokensPerMinute);
            }

            estimates.Add(new ModelEstimate
            {
                Model = model,
                Requests = tally.Requests,
                PromptTokens = tally.PromptTokens,
                OutputTokens = tally.OutputTokens,
                AssumedOutputTokens = tally.AssumedOutputTokens,
                RequestsWithAssumedOutput = tally.RequestsWithAssumedOutput,
                Price = price,
                Realtime = _prices.Price(model, tally.PromptTokens, tally.OutputTokens) with { Priced = price is not null },
                Batch = _prices.Price(model, tally.PromptTokens, tally.OutputTokens, batch: true) with { Priced = price is not null },
                RequestsPerMinute = rpm,
                TokensPerMinute = tpm,
                Minutes = minutes,
            });
        }

        return new BatchEstimate
        {
            Models = estimates,
            Plan = settings.Deadline is { } deadline ? DeadlinePlan.Of(estimates, endpoint, deadline, settings.Upstreams, settings.Native) : null,
            AssumedOutputRatio = settings.AssumedOutputRatio,
            MaxAssumedOutputTokens = settings.MaxAssumedOutputTokens,
            Errors = errors,
            MoreErrors = moreErrors,
        };
    }

    private static UInt128 IdDigest(string customId)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(customId), digest);
        return BinaryPrimitives.ReadUInt128LittleEndian(digest);
    }

    /// <summary>A valid request as the estimate counts it, and its cache key (null without a cache).</summary>
    private readonly record struct Counted(string Model, int PromptTokens, bool IsEmbedding, int? MaxOutputTokens, string? Key);

    private sealed class Tally
    {
        public long Requests;
        public long PromptTokens;
        public long OutputTokens;
        public long AssumedOutputTokens;
        public long RequestsWithAssumedOutput;

        public void Add(Counted request, EstimateOptions settings)
        {
            Requests++;
            PromptTokens += request.PromptTokens;
            if (request.IsEmbedding)
            {
                // An embedding is a vector, not tokens: nothing is generated.
                return;
            }

            if (request.MaxOutputTokens is { } max)
            {
                OutputTokens += max;
            }
            else
            {
                var assumed = (long)Math.Min(Math.Ceiling(request.PromptTokens * settings.AssumedOutputRatio), settings.MaxAssumedOutputTokens);
                OutputTokens += assumed;
                AssumedOutputTokens += assumed;
                RequestsWithAssumedOutput++;
            }
        }
    }
}
