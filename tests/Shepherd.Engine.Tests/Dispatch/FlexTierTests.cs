using System.Net;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>Flex items: sent with service_tier flex, priced at the batch discount, and a refusal for want of capacity is tried again without teaching the lane a rate limit.</summary>
public sealed class FlexTierTests : DispatchTestBase
{
    private const string Answer = """{"id":"c1","object":"chat.completion","model":"gpt-4.1-mini","service_tier":"flex","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500}}""";

    private const string Unavailable = """{"error":{"message":"Resource unavailable: flex capacity is exhausted, try again later.","type":"invalid_request_error","code":"resource_unavailable"}}""";

    [Fact]
    public async Task AFlexItem_GoesOnTheFlexTier_IsTriedAgainWhenRefused_AndCostsTheBatchPrice()
    {
        var (batchId, _) = await ImportAsync(1, mode: BatchMode.Flex);
        var handler = new ScriptedHandler(
            ScriptedHandler.Json(HttpStatusCode.TooManyRequests, Unavailable),
            ScriptedHandler.Json(HttpStatusCode.OK, Answer));
        var dispatcher = CreateDispatcher(handler);

        await RunToCompletionAsync(dispatcher, batchId);

        Assert.Equal(2, handler.Received.Count);
        Assert.All(handler.Received, sent => Assert.Equal("flex", JsonDocument.Parse(sent.Body).RootElement.GetProperty("service_tier").GetString()));
        Assert.Equal(0, dispatcher.Counters.RateLimited);
        var result = Assert.Single(await ResultsAsync(batchId));
        Assert.Equal(ItemState.Succeeded, result.State);
        var list = PriceTable.BuiltIn.Price("gpt-4.1-mini", 1000, 500).Nanos;
        var flex = PriceTable.BuiltIn.Price("gpt-4.1-mini", 1000, 500, batch: true).Nanos;
        Assert.Equal(flex, result.Result!.CostNanos);
        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal(new TierTally(0, 0, 1, flex, list - flex), batch.Tiers);
    }

    [Fact]
    public async Task ARealtimeItem_GoesAsWritten_AtTheListPrice_AndARateLimitIsStillARateLimit()
    {
        var (batchId, requests) = await ImportAsync(1);
        var handler = new ScriptedHandler(
            ScriptedHandler.Json(HttpStatusCode.TooManyRequests, """{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}""", ("retry-after", "1")),
            ScriptedHandler.Json(HttpStatusCode.OK, Answer));
        var dispatcher = CreateDispatcher(handler);

        await RunToCompletionAsync(dispatcher, batchId);

        Assert.Equal(JsonDocument.Parse(requests[0].Body).RootElement.ToString(), JsonDocument.Parse(handler.Received[^1].Body).RootElement.ToString());
        Assert.Equal(1, dispatcher.Counters.RateLimited);
        var result = Assert.Single(await ResultsAsync(batchId));
        Assert.Equal(PriceTable.BuiltIn.Price("gpt-4.1-mini", 1000, 500).Nanos, result.Result!.CostNanos);
        Assert.Equal(TierTally.None, (await Store.GetBatchAsync(batchId, Ct))!.Tiers);
    }

    [Fact]
    public async Task AFlexItem_IsHeldAgainstTheBudgetAtTheBatchPrice()
    {
        var requests = BatchFiles.OpenAIChat(1, maxTokens: 50);
        var prompt = new TokenEstimator().Estimate("gpt-4.1-mini", System.Text.Encoding.UTF8.GetBytes(requests[0].Body)).PromptTokens;
        var mostAtBatchPrice = PriceTable.BuiltIn.Price("gpt-4.1-mini", prompt, 50, batch: true).Nanos;
        // Enough for its most at the batch price, not at the list price.
        var (batchId, _) = await ImportAsync(1, mode: BatchMode.Flex, requests: requests, budgetNanos: mostAtBatchPrice + 1);
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, Answer.Replace("1000", "10", StringComparison.Ordinal).Replace("500", "5", StringComparison.Ordinal)));

        await RunToCompletionAsync(CreateDispatcher(handler), batchId);

        Assert.Equal(ItemState.Succeeded, Assert.Single(await ResultsAsync(batchId)).State);
    }

    [Theory]
    [InlineData("""{"model":"m","messages":[]}""")]
    [InlineData("""{"model":"m","service_tier":"default","messages":[]}""")]
    public void TheFlexBody_SetsTheTier_OverOneTheCallerSet(string body)
    {
        var flex = JsonDocument.Parse(FlexTier.Body(System.Text.Encoding.UTF8.GetBytes(body))).RootElement;

        Assert.Equal("flex", flex.GetProperty("service_tier").GetString());
        Assert.Equal("m", flex.GetProperty("model").GetString());
        Assert.Single(flex.EnumerateObject(), p => p.Name == "service_tier");
    }
}
