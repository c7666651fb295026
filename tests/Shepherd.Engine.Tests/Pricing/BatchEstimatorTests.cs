using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Pricing;

public sealed class BatchEstimatorTests
{
    private static readonly TokenEstimator Tokens = new();
    private static readonly BatchEstimator Estimator = new(PriceTable.BuiltIn, Tokens);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string Body(string model, string prompt, int? maxTokens = null) =>
        JsonSerializer.Serialize(maxTokens is { } max
            ? new { model, messages = new[] { new { role = "user", content = prompt } }, max_tokens = max } as object
            : new { model, messages = new[] { new { role = "user", content = prompt } } });

    private static string Chat(string id, string model, string prompt, int? maxTokens = null) =>
        $$"""{"custom_id":"{{id}}","method":"POST","url":"/v1/chat/completions","body":{{Body(model, prompt, maxTokens)}}}""";

    private static int PromptTokens(string model, string prompt) => Tokens.Estimate(model, Encoding.UTF8.GetBytes(Body(model, prompt))).PromptTokens;

    private static Task<BatchEstimate> EstimateAsync(EstimateOptions? options, params string[] lines) =>
        Estimator.EstimateAsync(BatchFiles.Stream(lines), options ?? new EstimateOptions(), Ct);

    [Fact]
    public async Task PromptTokens_AreTokenizedAsTheDispatcherCountsThem()
    {
        const string first = "Classify this review: the battery lasts all day.";
        const string second = "Summarise: the screen cracked after a week, support never answered.";

        var estimate = await EstimateAsync(null, Chat("a", "gpt-4.1-mini", first, 10), Chat("b", "gpt-4.1-mini", second, 10));

        Assert.True(estimate.IsValid);
        var model = Assert.Single(estimate.Models);
        Assert.Equal(2, model.Requests);
        Assert.Equal(PromptTokens("gpt-4.1-mini", first) + PromptTokens("gpt-4.1-mini", second), model.PromptTokens);
        Assert.True(model.PromptTokens > 20);
        Assert.Equal(model.PromptTokens, estimate.PromptTokens);
    }

    [Fact]
    public async Task Output_IsMaxTokensWhenNamed_AndAnAssumedShareOfThePromptOtherwise()
    {
        const string prompt = "Extract the product name and the complaint from this review, as JSON.";
        var tokens = PromptTokens("gpt-4o-mini", prompt);
        var longPrompt = string.Join(' ', Enumerable.Repeat("battery", 5000));

        var estimate = await EstimateAsync(null,
            Chat("named", "gpt-4o-mini", prompt, 300),
            Chat("assumed", "gpt-4o-mini", prompt),
            """{"custom_id":"completion-limit","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","prompt":"x","max_completion_tokens":7}}""",
            Chat("capped", "gpt-4o-mini", longPrompt));

        var model = Assert.Single(estimate.Models);
        var assumed = (long)Math.Ceiling(tokens * 0.5);
        Assert.Equal(300 + assumed + 7 + 1024, model.OutputTokens);
        Assert.Equal(assumed + 1024, model.AssumedOutputTokens);
        Assert.Equal(2, model.RequestsWithAssumedOutput);
        Assert.Equal((0.5, 1024), (estimate.AssumedOutputRatio, estimate.MaxAssumedOutputTokens));
    }

    [Fact]
    public async Task TheAssumption_CanBeTuned()
    {
        var prompt = string.Join(' ', Enumerable.Repeat("review", 100));
        var tokens = PromptTokens("gpt-4o-mini", prompt);

        var estimate = await EstimateAsync(new EstimateOptions { AssumedOutputRatio = 0.25, MaxAssumedOutputTokens = 10_000 }, Chat("a", "gpt-4o-mini", prompt));

        Assert.Equal((long)Math.Ceiling(tokens * 0.25), estimate.OutputTokens);
        Assert.Equal(estimate.OutputTokens, estimate.AssumedOutputTokens);
    }

    [Fact]
    public async Task Embeddings_ExpectNoOutput()
    {
        var estimate = await EstimateAsync(null,
            """{"custom_id":"e1","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":"a sentence to embed"}}""");

        var model = Assert.Single(estimate.Models);
        Assert.True(model.PromptTokens > 0);
        Assert.Equal((0L, 0L, 0L), (model.OutputTokens, model.AssumedOutputTokens, model.RequestsWithAssumedOutput));
        Assert.Equal(PriceTable.BuiltIn.Price("text-embedding-3-small", model.PromptTokens, 0), model.Realtime);
    }

    [Fact]
    public async Task EachModel_IsTalliedAndPricedOnItsOwn_AndTheTotalsAddUp()
    {
        string[] lines =
        [
            Chat("a", "gpt-4.1", "Write a haiku about batches.", 100),
            Chat("b", "gpt-4o-mini-2024-07-18", "Label: great value for the price.", 5),
            Chat("c", "gpt-4.1", "Write a limerick about rate limits.", 200),
            Chat("d", "deepseek-v3.2", "Translate to French: good morning.", 20),
        ];

        var estimate = await EstimateAsync(null, lines);

        Assert.Equal(["deepseek-v3.2", "gpt-4.1", "gpt-4o-mini-2024-07-18"], estimate.Models.Select(m => m.Model));
        Assert.Equal([1L, 2L, 1L], estimate.Models.Select(m => m.Requests));
        var gpt41 = estimate.Models.Single(m => m.Model == "gpt-4.1");
        Assert.Equal(300, gpt41.OutputTokens);
        Assert.Equal(PromptTokens("gpt-4.1", "Write a haiku about batches.") + PromptTokens("gpt-4.1", "Write a limerick about rate limits."), gpt41.PromptTokens);
        foreach (var model in estimate.Models)
        {
            Assert.True(model.Priced);
            Assert.Equal(PriceTable.BuiltIn.Price(model.Model, model.PromptTokens, model.OutputTokens), model.Realtime);
            Assert.Equal(PriceTable.BuiltIn.Price(model.Model, model.PromptTokens, model.OutputTokens, batch: true), model.Batch);
        }

        Assert.Equal(4, estimate.Requests);
        Assert.Equal(estimate.Models.Sum(m => m.PromptTokens), estimate.PromptTokens);
        Assert.Equal(estimate.Models.Sum(m => m.OutputTokens), estimate.OutputTokens);
        Assert.Equal(new Cost(estimate.Models.Sum(m => m.Realtime.Nanos), true), estimate.Realtime);
        Assert.Equal(new Cost(estimate.Models.Sum(m => m.Batch.Nanos), true), estimate.Batch);
        Assert.Equal(estimate.Realtime.Usd - estimate.Batch.Usd, estimate.SavingUsd);
        Assert.Empty(estimate.UnpricedModels);
    }

    [Fact]
    public async Task TheBatchCost_IsHalfTheRealtimeCost_ForADiscountedModel_AndTheSameForDeepSeek()
    {
        var estimate = await EstimateAsync(null,
            Chat("a", "gpt-4.1-mini", "Rate this review from 1 to 5: it broke on day two.", 40),
            Chat("b", "deepseek-v3.2", "Rate this review from 1 to 5: it broke on day two.", 40));

        var discounted = estimate.Models.Single(m => m.Model == "gpt-4.1-mini");
        var deepseek = estimate.Models.Single(m => m.Model == "deepseek-v3.2");
        Assert.True(discounted.Realtime.Nanos > 0);
        Assert.Equal(discounted.Realtime.Nanos, discounted.Batch.Nanos * 2);
        Assert.Equal(discounted.Realtime.Usd / 2, discounted.SavingUsd);
        Assert.True(deepseek.Realtime.Nanos > 0);
        Assert.Equal(deepseek.Realtime, deepseek.Batch);
        Assert.Equal(0m, deepseek.SavingUsd);
    }

    [Fact]
    public async Task AnUnknownModel_IsCountedButCostsNothing_AndIsFlagged()
    {
        var estimate = await EstimateAsync(null,
            Chat("a", "my-finetune", "Hello there, how are you?", 50),
            Chat("b", "gpt-4o-mini", "Hello there, how are you?", 50));

        var unknown = estimate.Models.Single(m => m.Model == "my-finetune");
        Assert.False(unknown.Priced);
        Assert.Null(unknown.Price);
        Assert.Equal(new Cost(0, false), unknown.Realtime);
        Assert.Equal(new Cost(0, false), unknown.Batch);
        Assert.True(unknown.PromptTokens > 0);
        Assert.Equal(50, unknown.OutputTokens);
        Assert.Equal(["my-finetune"], estimate.UnpricedModels);
        Assert.False(estimate.Realtime.Priced);
        Assert.False(estimate.Batch.Priced);
        Assert.Equal(estimate.Models.Single(m => m.Model == "gpt-4o-mini").Realtime.Nanos, estimate.Realtime.Nanos);
    }

    [Fact]
    public async Task ConfiguredPrices_PriceAModelTheBuiltInTableDoesNotKnow()
    {
        var estimator = new BatchEstimator(PriceTable.BuiltIn.With([new ModelPrice("my-finetune", 1.00m, 2.00m)]), Tokens);

        var estimate = await estimator.EstimateAsync(BatchFiles.Stream(Chat("a", "my-finetune", "Hello there", 1000)), new EstimateOptions(), Ct);

        var model = Assert.Single(estimate.Models);
        Assert.True(model.Priced);
        Assert.Equal((model.PromptTokens * 1_000) + (1000 * 2_000), model.Realtime.Nanos);
    }

    [Fact]
    public async Task AModelOverride_PricesAndTokenizesEveryRequestAsThatModel()
    {
        const string prompt = "Summarise the attached support ticket in one sentence.";

        var estimate = await EstimateAsync(new EstimateOptions { Model = "claude-haiku-4.5" },
            Chat("a", "gpt-4.1", prompt, 100),
            Chat("b", "my-finetune", prompt, 100),
            Chat("c", "gpt-4o-mini", prompt));

        var model = Assert.Single(estimate.Models);
        Assert.Equal("claude-haiku-4.5", model.Model);
        Assert.Equal(3, model.Requests);
        Assert.Equal(3 * PromptTokens("claude-haiku-4.5", prompt), model.PromptTokens);
        Assert.Equal(PriceTable.BuiltIn.Price("claude-haiku-4.5", model.PromptTokens, model.OutputTokens), model.Realtime);
        Assert.Empty(estimate.UnpricedModels);
    }

    [Fact]
    public async Task AnthropicLines_ArePricedByTheirModel_WithTheirMaxTokens()
    {
        var requests = BatchFiles.Anthropic(3, model: "claude-sonnet-4-5-20250929", maxTokens: 400);

        var estimate = await EstimateAsync(null, [.. requests.Select(r => r.Line)]);

        var model = Assert.Single(estimate.Models);
        Assert.Equal(3, model.Requests);
        Assert.Equal(1200, model.OutputTokens);
        Assert.Equal(0, model.AssumedOutputTokens);
        Assert.Equal("claude-sonnet-4-5", model.Price?.Model);
        Assert.Equal((model.PromptTokens * 3_000) + (1200 * 15_000), model.Realtime.Nanos);
        Assert.Equal(model.Realtime.Nanos / 2, model.Batch.Nanos);
    }

    [Fact]
    public async Task TheTime_IsTheLongerOfRequestsOverRpmAndTokensOverTpm()
    {
        var lines = Enumerable.Range(0, 30).Select(i => Chat($"r{i}", "gpt-4o-mini", "Label this review: fine.", 1000)).ToArray();
        var perRequest = PromptTokens("gpt-4o-mini", "Label this review: fine.") + 1000;

        var requestBound = await EstimateAsync(new EstimateOptions { RequestsPerMinute = 10, TokensPerMinute = 1_000_000 }, lines);
        var tokenBound = await EstimateAsync(new EstimateOptions { RequestsPerMinute = 10, TokensPerMinute = 3000 }, lines);
        var tokensOnly = await EstimateAsync(new EstimateOptions { TokensPerMinute = 3000 }, lines);
        var none = await EstimateAsync(null, lines);

        Assert.Equal(3.0, requestBound.Minutes);
        Assert.Equal(3.0, requestBound.Models[0].Minutes);
        Assert.Equal((10L, 1_000_000L), (requestBound.Models[0].RequestsPerMinute, requestBound.Models[0].TokensPerMinute));
        Assert.Equal(30.0 * perRequest / 3000, tokenBound.Minutes!.Value, 9);
        Assert.Equal(tokenBound.Minutes, tokensOnly.Minutes);
        Assert.Null(none.Minutes);
        Assert.Null(none.Models[0].Minutes);
    }

    [Fact]
    public async Task TheTime_OfSeveralModels_IsTheSlowestModels_SinceEachHasItsOwnLanes()
    {
        var lines = Enumerable.Range(0, 20).Select(i => Chat($"a{i}", "gpt-4o-mini", "x", 1))
            .Concat(Enumerable.Range(0, 5).Select(i => Chat($"b{i}", "gpt-4.1", "x", 1)))
            .ToArray();

        var estimate = await EstimateAsync(new EstimateOptions { RequestsPerMinute = 10 }, lines);

        Assert.Equal([0.5, 2.0], estimate.Models.Select(m => m.Minutes!.Value));
        Assert.Equal(2.0, estimate.Minutes);
    }

    [Fact]
    public async Task TheUpstreamsLimits_AddUpPerModel_AndTheGivenLimitsWin()
    {
        UpstreamOptions[] upstreams =
        [
            new() { Name = "a", Limits = new LaneLimits { RequestsPerMinute = 6, TokensPerMinute = 100_000 } },
            new()
            {
                Name = "b",
                Limits = new LaneLimits { RequestsPerMinute = 4, TokensPerMinute = 50_000 },
                ModelLimits = new Dictionary<string, LaneLimits> { ["gpt-4.1"] = new() { RequestsPerMinute = 1 } },
            },
            new() { Name = "c", Models = ["claude-haiku-4.5"], Limits = new LaneLimits { RequestsPerMinute = 1000 } },
        ];
        var lines = Enumerable.Range(0, 20).Select(i => Chat($"a{i}", "gpt-4o-mini", "x", 1))
            .Concat(Enumerable.Range(0, 14).Select(i => Chat($"b{i}", "gpt-4.1", "x", 1)))
            .ToArray();

        var estimate = await EstimateAsync(new EstimateOptions { Upstreams = upstreams }, lines);
        var given = await EstimateAsync(new EstimateOptions { Upstreams = upstreams, RequestsPerMinute = 20 }, lines);

        // gpt-4o-mini: a and b serve it, 6 + 4 rpm; gpt-4.1: b's lane for it allows 1, so 6 + 1.
        var mini = estimate.Models.Single(m => m.Model == "gpt-4o-mini");
        var gpt41 = estimate.Models.Single(m => m.Model == "gpt-4.1");
        Assert.Equal((10L, 150_000L, 2.0), (mini.RequestsPerMinute, mini.TokensPerMinute, mini.Minutes));
        Assert.Equal((7L, 150_000L, 2.0), (gpt41.RequestsPerMinute, gpt41.TokensPerMinute, gpt41.Minutes));
        var givenMini = given.Models.Single(m => m.Model == "gpt-4o-mini");
        Assert.Equal((20L, 150_000L, 1.0), (givenMini.RequestsPerMinute, givenMini.TokensPerMinute, givenMini.Minutes));

        // A model no upstream serves has no known limits; one that leaves tpm to be learned has no known tpm.
        Assert.Equal(((long?)null, (long?)null), BatchEstimator.LimitsOf([upstreams[2]], "gpt-4.1"));
        Assert.Equal(((long?)1010, (long?)null), BatchEstimator.LimitsOf(upstreams, "claude-haiku-4.5"));
    }

    [Fact]
    public async Task InvalidLines_AreReportedWithTheirLineNumbers_AndNotPriced()
    {
        var estimate = await EstimateAsync(null,
            Chat("a", "gpt-4o-mini", "fine", 5),
            "not json",
            "",
            """{"custom_id":"b","method":"GET","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"}}""",
            """{"custom_id":"c","params":{"model":"claude-haiku-4.5","max_tokens":5,"messages":[]}}""",
            """{"custom_id":"d","method":"POST","url":"/v1/embeddings","body":{"model":"text-embedding-3-small","input":"x"}}""",
            Chat("e", "gpt-4o-mini", "also fine", 5));

        Assert.False(estimate.IsValid);
        Assert.Equal(
            [(InputErrorCodes.InvalidJsonLine, 2L), (InputErrorCodes.InvalidMethod, 4L), (InputErrorCodes.FormatMismatch, 5L), (InputErrorCodes.UrlMismatch, 6L)],
            estimate.Errors.Select(e => (e.Code, e.Line!.Value)));
        Assert.Equal(2, estimate.Requests);
        Assert.False(estimate.ErrorsTruncated);
    }

    [Fact]
    public async Task AFixedEndpoint_RefusesLinesOfAnother()
    {
        var estimate = await EstimateAsync(new EstimateOptions { Endpoint = BatchEndpoints.Embeddings }, Chat("a", "gpt-4o-mini", "x", 5));

        Assert.Equal((InputErrorCodes.UrlMismatch, 1L), (estimate.Errors.Single().Code, estimate.Errors.Single().Line!.Value));
    }

    [Fact]
    public async Task ManyInvalidLines_KeepTheFirstErrors_AndSayThereWereMore()
    {
        var lines = Enumerable.Range(0, 10).Select(_ => "{").Append(Chat("ok", "gpt-4o-mini", "x", 1)).ToArray();

        var estimate = await EstimateAsync(new EstimateOptions { MaxErrors = 3 }, lines);

        Assert.Equal([1L, 2L, 3L], estimate.Errors.Select(e => e.Line!.Value));
        Assert.True(estimate.ErrorsTruncated);
        Assert.Equal(1, estimate.Requests);
    }

    [Fact]
    public async Task ALineTooLong_AndAnEmptyInput_AreErrors()
    {
        var tooLong = await EstimateAsync(new EstimateOptions { MaxLineBytes = 200 }, Chat("a", "gpt-4o-mini", new string('x', 300), 5), Chat("b", "gpt-4o-mini", "x"));
        var empty = await Estimator.EstimateAsync(new MemoryStream(), new EstimateOptions(), Ct);

        Assert.Equal((InputErrorCodes.LineTooLong, 1L), (tooLong.Errors.Single().Code, tooLong.Errors.Single().Line!.Value));
        Assert.Equal((InputErrorCodes.EmptyFile, (long?)null), (empty.Errors.Single().Code, empty.Errors.Single().Line));
        Assert.Empty(empty.Models);
        Assert.Null(empty.Minutes);
    }

    [Fact]
    public async Task ALargeInput_StreamsThrough_LineByLine()
    {
        // Lines made as they are read: the estimator gets a stream it can neither seek nor measure,
        // and keeps one running total per model.
        const int count = 20_000;
        await using var input = new GeneratedLines(count, i => Chat($"r{i}", i % 2 == 0 ? "gpt-4o-mini" : "gpt-4.1-mini", "Label this review: fine.", 10));

        var estimate = await Estimator.EstimateAsync(input, new EstimateOptions(), Ct);

        Assert.True(estimate.IsValid);
        Assert.Equal(count, estimate.Requests);
        Assert.Equal([count / 2L, count / 2L], estimate.Models.Select(m => m.Requests));
        Assert.Equal(count * 10L, estimate.OutputTokens);
    }

    [Fact]
    public async Task TheJson_HasSnakeCaseFieldsForScripts()
    {
        var estimate = await EstimateAsync(new EstimateOptions { RequestsPerMinute = 60 }, Chat("a", "gpt-4.1", "hi", 10), Chat("b", "mystery", "hi"));
        using var buffer = new MemoryStream();
        await using (var writer = new Utf8JsonWriter(buffer))
        {
            estimate.WriteTo(writer);
        }

        var json = JsonDocument.Parse(buffer.ToArray()).RootElement;

        Assert.Equal("batch.estimate", json.GetProperty("object").GetString());
        Assert.Equal(2, json.GetProperty("requests").GetInt64());
        Assert.Equal(estimate.Realtime.Usd, json.GetProperty("realtime_usd").GetDecimal());
        Assert.Equal(estimate.Batch.Usd, json.GetProperty("batch_usd").GetDecimal());
        Assert.False(json.GetProperty("priced").GetBoolean());
        Assert.Equal("mystery", json.GetProperty("unpriced_models")[0].GetString());
        Assert.Equal(Math.Round(1.0 / 60, 3), json.GetProperty("minutes").GetDouble());
        Assert.Equal(0.5, json.GetProperty("assumed_output").GetProperty("ratio").GetDouble());
        var gpt41 = json.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("model").GetString() == "gpt-4.1");
        Assert.Equal(2.00m, gpt41.GetProperty("price").GetProperty("input").GetDecimal());
        Assert.Equal(0.5m, gpt41.GetProperty("price").GetProperty("batch_discount").GetDecimal());
        Assert.Equal(10, gpt41.GetProperty("output_tokens").GetInt64());
        var mystery = json.GetProperty("models").EnumerateArray().Single(m => m.GetProperty("model").GetString() == "mystery");
        Assert.Equal(JsonValueKind.Null, mystery.GetProperty("price").ValueKind);
        Assert.Equal(mystery.GetProperty("output_tokens").GetInt64(), mystery.GetProperty("assumed_output_tokens").GetInt64());
        Assert.Equal(0, json.GetProperty("errors").GetArrayLength());
    }

    /// <summary>A read-only stream of generated JSONL lines, made as they are read.</summary>
    private sealed class GeneratedLines(int count, Func<int, string> line) : Stream
    {
        private int _next;
        private byte[] _pending = [];
        private int _offset;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_offset == _pending.Length)
            {
                if (_next == count)
                {
                    return 0;
                }

                _pending = Encoding.UTF8.GetBytes(line(_next++) + "\n");
                _offset = 0;
            }

            var n = Math.Min(buffer.Length, _pending.Length - _offset);
            _pending.AsSpan(_offset, n).CopyTo(buffer);
            _offset += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [Fact]
    public async Task ARepeatedCustomId_IsNamedWithTheLineThatFirstUsedIt_AsTheImportNamesIt()
    {
        var estimate = await EstimateAsync(new EstimateOptions(), Chat("x", "gpt-4o-mini", "a", 1), Chat("y", "gpt-4o-mini", "b", 1), Chat("x", "gpt-4o-mini", "c", 1));

        var error = Assert.Single(estimate.Errors);
        Assert.Equal(InputError.Duplicate("x", 1, 3), error);
    }

    [Fact]
    public async Task APromptBeyondItsModelsContextWindow_IsFlaggedWithItsLine()
    {
        var huge = string.Concat(Enumerable.Repeat("word ", 150_000));

        var estimate = await EstimateAsync(null, Chat("small", "gpt-4o-mini", "hello", 5), Chat("big", "gpt-4o-mini", huge, 5), Chat("own", "my-own-model", huge, 5));

        var error = Assert.Single(estimate.Errors);
        Assert.Equal((InputErrorCodes.ContextLengthExceeded, (long?)2), (error.Code, error.Line));
    }

    [Fact]
    public async Task WhatTheAnswerCacheHolds_IsLeftOut_AndCountedWithWhatItSaves()
    {
        using var folder = new TempDirectory();
        await using var cache = await SqliteAnswerCache.OpenAsync(folder.File("answers.db"), 1 << 20, TimeSpan.FromDays(30), TimeProvider.System, Ct);
        var hot = Body("gpt-4.1-mini", "Write a slogan").Replace("\"messages\"", "\"temperature\":0.9,\"messages\"", StringComparison.Ordinal);
        foreach (var body in new[] { Body("gpt-4.1-mini", "Answered before", 10), hot })
        {
            cache.Add(AnswerCache.KeyOf(UpstreamKind.OpenAI, null, "/v1/chat/completions", Encoding.UTF8.GetBytes(body)), new CachedAnswer(200, [1], 1_000, 500, 0));
        }

        string[] lines = [Chat("a", "gpt-4.1-mini", "Answered before", 10), Chat("b", "gpt-4.1-mini", "Never asked", 10),
            $$"""{"custom_id":"c","method":"POST","url":"/v1/chat/completions","body":{{hot}}}"""];
        var all = await EstimateAsync(new EstimateOptions { Cache = cache }, lines);
        var unsampled = await EstimateAsync(new EstimateOptions { Cache = cache, CacheUse = CacheUse.Unsampled }, lines);
        var otherTenant = await EstimateAsync(new EstimateOptions { Cache = cache, Tenant = "acme" }, lines);

        Assert.Equal((1L, 2L, 2 * Cost.ToUsd(PriceTable.BuiltIn.Price("gpt-4.1-mini", 1_000, 500).Nanos)), (all.Requests, all.Cached, all.CachedUsd));
        Assert.Equal(PromptTokens("gpt-4.1-mini", "Never asked"), all.PromptTokens);
        Assert.Equal((2L, 1L), (unsampled.Requests, unsampled.Cached));
        Assert.Equal((3L, 0L), (otherTenant.Requests, otherTenant.Cached));
    }
}

public sealed class DeadlinePlanTests
{
    private static readonly BatchEstimator Estimator = new(PriceTable.BuiltIn, new TokenEstimator());

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly UpstreamOptions WithBatchApi = new() { Name = "openai", BaseUrl = new Uri("http://127.0.0.1:9/v1"), BatchApi = true, Limits = new LaneLimits { RequestsPerMinute = 600 } };
    private static readonly UpstreamOptions WithFlex = new() { Name = "flex", BaseUrl = new Uri("http://127.0.0.1:9/v1"), Flex = true, Limits = new LaneLimits { RequestsPerMinute = 600 } };
    private static readonly UpstreamOptions Plain = new() { Name = "plain", BaseUrl = new Uri("http://127.0.0.1:9/v1"), Limits = new LaneLimits { RequestsPerMinute = 600 } };

    private static Task<BatchEstimate> PlanAsync(TimeSpan deadline, params UpstreamOptions[] upstreams) =>
        Estimator.EstimateAsync(
            BatchFiles.Stream([.. BatchFiles.OpenAIChat(1200, model: "gpt-4.1-mini", maxTokens: 50).Select(r => r.Line)]),
            new EstimateOptions { Deadline = deadline, Upstreams = upstreams, Native = new NativeBatchOptions { CancelGrace = TimeSpan.FromMinutes(1), PollInterval = TimeSpan.FromSeconds(30) } },
            Ct);

    [Fact]
    public async Task WithRoomBeforeTheDeadline_TheBatchApiTakesEverything_AtTheBatchPrice_AndCutsOverInTime()
    {
        var estimate = await PlanAsync(TimeSpan.FromHours(6), WithBatchApi);

        var plan = estimate.Plan!;
        var model = Assert.Single(plan.Models);
        Assert.Equal(ItemTier.Native, model.Tier);
        // 1,200 requests at 600 rpm need 2 minutes; the margin keeps a quarter of that, two looks and the grace.
        Assert.Equal((6 * 60) - 2 - 0.5 - 1 - 1, model.CutOverAfterMinutes!.Value, 6);
        Assert.Equal(estimate.Batch, plan.Expected);
        Assert.Equal(estimate.Realtime, plan.Most);
        Assert.True(plan.OnTime);
        Assert.Equal([true, true, false], plan.Tiers.Select(t => t.Available));
    }

    [Fact]
    public async Task WithoutRoomForABatchJob_FlexOrRealtimeIsPlanned_AndADeadlineRealtimeCannotMeetIsSaid()
    {
        var tight = await PlanAsync(TimeSpan.FromMinutes(3), WithBatchApi, WithFlex);
        Assert.Equal(ItemTier.Flex, Assert.Single(tight.Plan!.Models).Tier);
        Assert.Equal(tight.Batch, tight.Plan.Expected);

        var plain = await PlanAsync(TimeSpan.FromMinutes(1), Plain);
        Assert.Equal(ItemTier.Realtime, Assert.Single(plain.Plan!.Models).Tier);
        Assert.Null(plain.Plan.Models[0].CutOverAfterMinutes);
        Assert.Equal(plain.Realtime, plain.Plan.Expected);
        Assert.False(plain.Plan.OnTime);

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            plain.WriteTo(json);
        }

        var written = JsonDocument.Parse(buffer.ToArray()).RootElement.GetProperty("plan");
        Assert.False(written.GetProperty("on_time").GetBoolean());
        Assert.Equal("realtime", written.GetProperty("models")[0].GetProperty("tier").GetString());
        Assert.Equal(["realtime", "native", "flex"], written.GetProperty("tiers").EnumerateArray().Select(t => t.GetProperty("tier").GetString()));
    }
}
