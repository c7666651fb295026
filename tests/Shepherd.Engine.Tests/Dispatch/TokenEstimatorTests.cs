using System.Text;
using Microsoft.ML.Tokenizers;
using Shepherd.Engine.Dispatch;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class TokenEstimatorTests
{
    private static readonly TokenEstimator Estimator = new();

    [Fact]
    public void ChatPrompts_AreCountedWithTheModelsTokenizer_PlusFormatting()
    {
        const string system = "You label product reviews.";
        const string user = "The battery lasts all day, but the app keeps disconnecting.";
        var body = Encoding.UTF8.GetBytes($$"""{"model":"gpt-4.1-mini","messages":[{"role":"system","content":"{{system}}"},{"role":"user","content":"{{user}}"}],"max_tokens":200}""");
        var o200k = TiktokenTokenizer.CreateForEncoding("o200k_base");

        var (prompt, max) = Estimator.Estimate("gpt-4.1-mini", body);

        Assert.Equal(o200k.CountTokens(system) + o200k.CountTokens(user) + (2 * 3) + 3, prompt);
        Assert.Equal(200, max);
    }

    [Fact]
    public void OlderModels_UseCl100k()
    {
        const string text = "Schrödinger's naïve café – ünïcödé";
        var body = Encoding.UTF8.GetBytes($$"""{"model":"gpt-4-0613","prompt":"{{text}}","max_completion_tokens":5}""");

        var (prompt, max) = Estimator.Estimate("gpt-4-0613", body);

        Assert.Equal(TiktokenTokenizer.CreateForEncoding("cl100k_base").CountTokens(text), prompt);
        Assert.Equal(5, max);
    }

    [Fact]
    public void AnthropicSystemAndContentBlocks_AreText_TheirTypesAreNot()
    {
        var plain = Estimator.Estimate("claude-haiku-4.5", """{"model":"m","system":"be brief","messages":[{"role":"user","content":"hello there"}]}"""u8);
        var blocks = Estimator.Estimate("claude-haiku-4.5", """{"model":"m","system":[{"type":"text","text":"be brief"}],"messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}]}"""u8);

        Assert.Equal(plain.PromptTokens, blocks.PromptTokens);
        Assert.Null(plain.MaxOutputTokens);
    }

    [Fact]
    public void ABodyThatIsNotAnObject_CountsNothing()
    {
        Assert.Equal((0, (int?)null), Estimator.Estimate("gpt-4.1", "[1,2]"u8));
        Assert.Equal((0, (int?)null), Estimator.Estimate("gpt-4.1", "{oops"u8));
    }
}
