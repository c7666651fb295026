using System.Text;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Tests.Formats;

public sealed class SamplingTests
{
    [Theory]
    [InlineData("""{"model":"m","temperature":0.7,"messages":[]}""", true)]
    [InlineData("""{"model":"m","messages":[],"n":3}""", true)]
    [InlineData("""{"model":"m","temperature":1e-3}""", true)]
    [InlineData("""{"model":"m","temperature":0,"n":1,"messages":[{"temperature":1}]}""", false)]
    [InlineData("""{"model":"m","metadata":{"n":5,"temperature":2}}""", false)]
    [InlineData("""{"model":"m","temperature":"hot"}""", false)]
    [InlineData("""{"model":"m"}""", false)]
    [InlineData("""[1,2]""", false)]
    [InlineData("""{"model":""", false)]
    public void ARequestAsksForSampling_ByATemperatureAbove0_OrMoreThanOneChoice(string body, bool asks) =>
        Assert.Equal(asks, Sampling.IsAsked(Encoding.UTF8.GetBytes(body)));
}
