using Shepherd.Engine.Formats;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Upstreams;

/// <summary>Which upstream offers which tier at which endpoint: one rule for the runner, the doors and the estimate.</summary>
public sealed class TierOfferTests
{
    [Theory]
    [InlineData(UpstreamKind.OpenAI, "https://api.openai.com/v1", null, BatchEndpoints.ChatCompletions, true)]
    [InlineData(UpstreamKind.OpenAI, "https://api.openai.com/v1", null, BatchEndpoints.Messages, false)]
    [InlineData(UpstreamKind.OpenAI, "http://127.0.0.1:9/v1", null, BatchEndpoints.ChatCompletions, false)]
    [InlineData(UpstreamKind.OpenAI, "http://127.0.0.1:9/v1", true, BatchEndpoints.Embeddings, true)]
    [InlineData(UpstreamKind.Anthropic, "https://api.anthropic.com", null, BatchEndpoints.Messages, true)]
    [InlineData(UpstreamKind.Anthropic, "https://api.anthropic.com", null, BatchEndpoints.ChatCompletions, false)]
    [InlineData(UpstreamKind.Anthropic, "https://api.anthropic.com", false, BatchEndpoints.Messages, false)]
    public void ABatchApi_RunsTheEndpointsOfItsKind(UpstreamKind kind, string baseUrl, bool? declared, string endpoint, bool runs) =>
        Assert.Equal(runs, new UpstreamOptions { Kind = kind, BaseUrl = new Uri(baseUrl), BatchApi = declared }.RunsBatchesAt(endpoint));

    [Theory]
    [InlineData(UpstreamKind.OpenAI, true, BatchEndpoints.ChatCompletions, true)]
    [InlineData(UpstreamKind.OpenAI, true, BatchEndpoints.Messages, false)]
    [InlineData(UpstreamKind.OpenAI, false, BatchEndpoints.ChatCompletions, false)]
    [InlineData(UpstreamKind.Anthropic, true, BatchEndpoints.Messages, false)]
    public void TheFlexTier_IsOpenAIs_ForItsEndpoints_WhenDeclared(UpstreamKind kind, bool flex, string endpoint, bool offers) =>
        Assert.Equal(offers, new UpstreamOptions { Kind = kind, Flex = flex }.OffersFlexAt(endpoint));
}
